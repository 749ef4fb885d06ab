"""A small Hugging Face Hub look-alike on 127.0.0.1, so tests drive the real huggingface_hub client over HTTP.

It implements what `HfApi` calls for publishing: create-repo, validate-yaml, pre-upload, the LFS
batch API and PUT, NDJSON commits (atomic: files appear only with their commit; `parentCommit`
must be the branch head), tags; and what readers call (huggingface_hub's `snapshot_download`,
`list_repo_files`, `hf_hub_download`, llama.cpp's `-hf`): refs, commits, repo info by branch, tag
or commit sha (`/api/models/{repo}/revision/{rev}`), the tree listing
(`/api/models/{repo}/tree/{rev}[/{path}]`, `recursive`, in git's order, paged by a `Link: rel="next"`
header with a cursor), `paths-info`, and `/{repo}/resolve/{rev}/{path}`. Resolve answers as the Hub
does: a small (git) file directly, with `X-Repo-Commit`, `ETag` (its git blob sha1) and
`Content-Length`; an LFS file with a 302 to storage on another origin (`cdn_url`, which never needs
the token) carrying `X-Repo-Commit`, `X-Linked-Etag` (its sha256) and `X-Linked-Size`. Storage serves
HEAD and GET with HTTP Range.

Faults for tests: `hub.fail("POST", "/commit/", times=1, status=503)` answers the next matching
request with that status. Every request's method, path and headers (lower-case names) are recorded in `hub.requests`.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlencode, urlparse

from registry.hub import hub_order  # the order the Hub lists a tree in (llama.cpp's -hf depends on it)


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The small text file git stores in place of an LFS object (its blob sha1 is the tree's `oid`)."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class Commit:
    oid: str
    parent: "str | None"
    title: str
    description: str
    files: dict[str, tuple[str, str]]  # path -> ("regular", base64 bytes) | ("lfs", sha256)
    date: float = field(default_factory=time.time)


@dataclass
class Repo:
    repo_id: str
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)


class HubState:
    def __init__(self, token: "str | None", tree_page_size: int = 1000):
        self.token = token
        self.tree_page_size = tree_page_size  # the Hub's: 1000 entries a page (50 with expand)
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.faults: list[list] = []  # [method, substring, remaining, status]
        self.requests: list[tuple[str, str, dict]] = []
        self.lose_commit_responses = 0  # commits that land but answer 503, as if the response were lost

    # --- helpers used by tests -------------------------------------------------------------
    def fail(self, method: str, path_contains: str, times: int = 1, status: int = 503) -> None:
        with self.lock:
            self.faults.append([method, path_contains, times, status])

    def head(self, repo_id: str, branch: str = "main") -> "str | None":
        repo = self.repos.get(repo_id)
        return repo.branches.get(branch) if repo else None

    def file_bytes(self, repo_id: str, rev: str, path: str) -> "bytes | None":
        with self.lock:
            repo = self.repos.get(repo_id)
            commit = self._resolve(repo, rev) if repo else None
            if commit is None or path not in commit.files:
                return None
            return self._content(commit.files[path])

    def _resolve(self, repo: Repo, rev: str) -> "Commit | None":
        oid = repo.branches.get(rev) or repo.tags.get(rev) or (rev if rev in repo.commits else None)
        return repo.commits.get(oid) if oid else None

    def _content(self, entry: tuple[str, str]) -> bytes:
        kind, value = entry
        return base64.b64decode(value) if kind == "regular" else self.lfs[value]

    def _file_entry(self, path: str, entry: tuple[str, str]) -> dict:
        """A file as the tree and paths-info list it: `oid` is the git blob's sha1 (for an LFS file,
        its pointer's), `size` the content's; `lfs` carries the sha256 and the pointer's size."""
        kind, value = entry
        if kind == "regular":
            data = base64.b64decode(value)
            return {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path}
        size = len(self.lfs[value])
        pointer = lfs_pointer(value, size)
        return {"type": "file", "oid": git_blob_sha1(pointer), "size": size, "path": path,
                "lfs": {"oid": value, "size": size, "pointerSize": len(pointer)}}

    def _folder_entry(self, commit: Commit, path: str) -> dict:
        inside = sorted((p, v) for p, v in commit.files.items() if p.startswith(path + "/"))
        oid = hashlib.sha1(json.dumps(inside).encode()).hexdigest()  # changes when anything inside does
        return {"type": "directory", "oid": oid, "size": 0, "path": path}

    def _entries(self, commit: Commit, under: str, recursive: bool) -> "list[dict] | None":
        """The tree below `under` ("" for the root) in git's order; None when there is no such folder."""
        prefix = under + "/" if under else ""
        inside = [p[len(prefix):] for p in commit.files if p.startswith(prefix)]
        if under and not inside:
            return None
        out = []
        for rel, is_folder in hub_order(inside):
            if not recursive and "/" in rel:
                continue
            path = prefix + rel
            out.append(self._folder_entry(commit, path) if is_folder else self._file_entry(path, commit.files[path]))
        return out


def _json(handler: "Handler", status: int, body, headers: "dict | None" = None) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(data)


def _error(handler: "Handler", status: int, message: str, error_code: "str | None" = None) -> None:
    headers = {"X-Error-Message": message}
    if error_code:
        headers["X-Error-Code"] = error_code
    _json(handler, status, {"error": message}, headers)


REPO = r"(?P<repo>[^/]+/[^/]+)"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HubState
    base_url: str
    cdn_url: str
    routes: list[tuple[str, str, str]]

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    # --- plumbing --------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _authorized(self) -> bool:
        if self.state.token is None:
            return True
        return self.headers.get("Authorization") == f"Bearer {self.state.token}"

    def _dispatch(self) -> None:
        url = urlparse(self.path)
        raw, query = url.path, parse_qs(url.query)
        path = unquote(raw)
        body = self._body() if self.command in ("POST", "PUT") else b""
        with self.state.lock:
            self.state.requests.append((self.command, path, {k.lower(): v for k, v in self.headers.items()}))
            for fault in self.state.faults:
                if fault[0] == self.command and fault[1] in path and fault[2] > 0:
                    fault[2] -= 1
                    status = fault[3]
                    break
            else:
                status = 0
        if status:
            return _error(self, status, "injected fault")
        # Routes match the path as sent: a revision arrives quoted whole ("refs%2Fpr%2F1"), so a
        # slash inside it must not split it.
        for method, pattern, name in self.routes:
            m = re.fullmatch(pattern, raw)
            if m and method == self.command:
                # LFS PUTs go to a pre-signed storage URL (as on the Hub), not to the API.
                if method == "POST" and name not in READS and not self._authorized():
                    return _error(self, 401, "Invalid credentials in Authorization header")
                groups = {k: unquote(v) for k, v in m.groupdict().items() if v is not None}
                return getattr(self, name)(body=body, query=query, **groups)
        _error(self, 404, f"no route for {self.command} {path}")

    do_GET = do_POST = do_PUT = do_HEAD = _dispatch

    def _repo(self, repo: str) -> "Repo | None":
        found = self.state.repos.get(repo)
        if found is None:
            _error(self, 404, "Repository not found", "RepoNotFound")
        return found

    # --- endpoints -------------------------------------------------------------------------
    def create_repo(self, body: bytes, query, **_) -> None:
        data = json.loads(body)
        repo_id = f"{data.get('organization') or 'user'}/{data['name']}"
        with self.state.lock:
            if repo_id in self.state.repos:  # the Hub answers 409 with the repo's url
                return _json(self, 409, {"error": "You already created this model repo",
                                         "url": f"{self.base_url}/{repo_id}"})
            repo = Repo(repo_id)
            oid = hashlib.sha1(f"init:{repo_id}".encode()).hexdigest()
            repo.commits[oid] = Commit(oid, None, "initial commit", "", {})
            repo.branches["main"] = oid
            self.state.repos[repo_id] = repo
        _json(self, 200, {"url": f"{self.base_url}/{repo_id}", "name": repo_id})

    def validate_yaml(self, body: bytes, **_) -> None:
        _json(self, 200, {"errors": [], "warnings": []})

    def preupload(self, repo: str, rev: str, body: bytes, **_) -> None:
        files = json.loads(body)["files"]
        with self.state.lock:
            r = self._repo(repo)
            if r is None:
                return
            commit = self.state._resolve(r, rev)
            answer = []
            for f in files:
                mode = "lfs" if f["path"].endswith(".gguf") or f["size"] > 10_000_000 else "regular"
                oid = None
                if commit and f["path"] in commit.files:
                    kind, value = commit.files[f["path"]]
                    oid = value if kind == "lfs" else git_blob_sha1(base64.b64decode(value))
                answer.append({"path": f["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        _json(self, 200, {"files": answer})

    def lfs_batch(self, repo: str, body: bytes, **_) -> None:
        data = json.loads(body)
        objects = []
        for obj in data["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.state.lfs:
                entry["actions"] = {"upload": {"href": f"{self.base_url}/lfs-upload/{obj['oid']}"}}
            objects.append(entry)
        _json(self, 200, {"transfer": "basic", "objects": objects})

    def lfs_put(self, oid: str, body: bytes, **_) -> None:
        if hashlib.sha256(body).hexdigest() != oid:
            return _error(self, 400, "sha256 mismatch")
        with self.state.lock:
            self.state.lfs[oid] = body
        _json(self, 200, {})

    def commit(self, repo: str, rev: str, body: bytes, **_) -> None:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = lines[0]["value"]
        with self.state.lock:
            r = self._repo(repo)
            if r is None:
                return
            head = r.branches.get(rev)
            if head is None:
                return _error(self, 404, f"Invalid rev id: {rev}", "RevisionNotFound")
            parent = header.get("parentCommit")
            if parent is not None and parent != head:
                return _error(self, 412, "A commit has happened since. Please refresh and try again.")
            files = dict(r.commits[head].files)
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                if key == "file":
                    files[value["path"]] = ("regular", value["content"])
                elif key == "lfsFile":
                    if value["oid"] not in self.state.lfs:
                        return _error(self, 422, f"LFS object {value['oid']} was never uploaded")
                    files[value["path"]] = ("lfs", value["oid"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                else:
                    return _error(self, 400, f"unsupported operation {key}")
            oid = hashlib.sha1(json.dumps([head, header, sorted(files.items())]).encode()).hexdigest()
            r.commits[oid] = Commit(oid, head, header["summary"], header.get("description", ""), files)
            r.branches[rev] = oid
            if self.state.lose_commit_responses > 0:
                self.state.lose_commit_responses -= 1
                return _error(self, 503, "upstream timed out")
        _json(self, 200, {"success": True, "commitOid": oid, "commitUrl": f"{self.base_url}/{repo}/commit/{oid}"})

    def create_tag(self, repo: str, rev: str, body: bytes, **_) -> None:
        data = json.loads(body)
        with self.state.lock:
            r = self._repo(repo)
            if r is None:
                return
            commit = self.state._resolve(r, rev)
            if commit is None:
                return _error(self, 404, f"Invalid rev id: {rev}", "RevisionNotFound")
            if data["tag"] in r.tags:
                return _error(self, 409, f"Tag {data['tag']} already exists")
            r.tags[data["tag"]] = commit.oid
        _json(self, 200, {})

    def refs(self, repo: str, **_) -> None:
        with self.state.lock:
            r = self._repo(repo)
            if r is None:
                return
            body = {
                "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": o} for n, o in r.branches.items()],
                "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": o} for n, o in r.tags.items()],
                "converts": [],
            }
        _json(self, 200, body)

    def commits(self, repo: str, rev: str, **_) -> None:
        with self.state.lock:
            r = self._repo(repo)
            if r is None:
                return
            commit, out = self.state._resolve(r, rev), []
            while commit is not None:
                out.append({"id": commit.oid, "authors": [{"user": "dsq"}], "title": commit.title,
                            "message": commit.description,
                            "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit.date))})
                commit = r.commits.get(commit.parent) if commit.parent else None
        _json(self, 200, out)

    def repo_info(self, repo: str, query, rev: str = "main", **_) -> None:
        with self.state.lock:
            r = self._repo(repo)
            if r is None:
                return
            commit = self.state._resolve(r, rev)
            if commit is None:
                return _error(self, 404, f"Invalid rev id: {rev}", "RevisionNotFound")
            blobs = query.get("blobs", ["false"])[0].lower() == "true"
            siblings = []
            for p, _ in hub_order(commit.files):
                if p in commit.files:
                    sibling = {"rfilename": p}
                    if blobs:
                        entry = self.state._file_entry(p, commit.files[p])
                        sibling.update(size=entry["size"], blobId=entry["oid"])
                        if "lfs" in entry:
                            sibling["lfs"] = {"sha256": entry["lfs"]["oid"], "size": entry["size"],
                                              "pointerSize": entry["lfs"]["pointerSize"]}
                    siblings.append(sibling)
            body = {"id": repo, "modelId": repo, "sha": commit.oid, "private": False, "gated": False,
                    "disabled": False, "tags": ["gguf"], "library_name": "gguf",
                    "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit.date)),
                    "siblings": siblings}
        _json(self, 200, body)

    def tree(self, repo: str, rev: str, query, path: str = "", **_) -> None:
        recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
        expand = query.get("expand", ["false"])[0].lower() in ("true", "1")
        with self.state.lock:
            r = self._repo(repo)
            if r is None:
                return
            commit = self.state._resolve(r, rev)
            if commit is None:
                return _error(self, 404, f"Invalid rev id: {rev}", "RevisionNotFound")
            entries = self.state._entries(commit, path.strip("/"), recursive)
        if entries is None:
            return _error(self, 404, f"{path} does not exist on {rev}", "EntryNotFound")
        # Paged as the Hub pages: an opaque cursor in the next page's URL, given in a Link header.
        size = min(self.state.tree_page_size, 50) if expand else self.state.tree_page_size
        start = int(base64.urlsafe_b64decode(query["cursor"][0]).decode()) if "cursor" in query else 0
        page, headers = entries[start:start + size], {}
        if start + size < len(entries):
            cursor = base64.urlsafe_b64encode(str(start + size).encode()).decode()
            rest = urlencode({"recursive": str(recursive).lower(), "expand": str(expand).lower(), "cursor": cursor})
            headers["Link"] = f'<{self.base_url}{urlparse(self.path).path}?{rest}>; rel="next"'
        _json(self, 200, page, headers)

    def paths_info(self, repo: str, rev: str, body: bytes, **_) -> None:
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = json.loads(body or b"{}").get("paths", [])
        else:
            paths = parse_qs(body.decode()).get("paths", [])
        with self.state.lock:
            r = self._repo(repo)
            if r is None:
                return
            commit = self.state._resolve(r, rev)
            if commit is None:
                return _error(self, 404, f"Invalid rev id: {rev}", "RevisionNotFound")
            out = []
            for p in paths:
                p = p.strip("/")
                if p in commit.files:
                    out.append(self.state._file_entry(p, commit.files[p]))
                elif any(f.startswith(p + "/") for f in commit.files):
                    out.append(self.state._folder_entry(commit, p))
        _json(self, 200, out)

    def resolve(self, repo: str, rev: str, path: str, **_) -> None:
        with self.state.lock:
            r = self._repo(repo)
            if r is None:
                return
            commit = self.state._resolve(r, rev)
            if commit is None:
                return _error(self, 404, f"Invalid rev id: {rev}", "RevisionNotFound")
            if path not in commit.files:
                return _error(self, 404, "Entry not found", "EntryNotFound")
            kind, value = commit.files[path]
            data = self.state._content(commit.files[path])
        if kind == "lfs":
            # As the Hub: LFS content lives in storage on another origin; the redirect itself
            # carries what a client needs to know about the file.
            self.send_response(302)
            self.send_header("Location", f"{self.cdn_url}/cdn/{value}")
            self.send_header("X-Repo-Commit", commit.oid)
            self.send_header("X-Linked-Etag", f'"{value}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("ETag", f'"{git_blob_sha1(lfs_pointer(value, len(data)))}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        send_bytes(self, data, f'"{git_blob_sha1(data)}"', {"X-Repo-Commit": commit.oid})

    def storage(self, oid: str, **_) -> None:
        with self.state.lock:
            data = self.state.lfs.get(oid)
        if data is None:
            return _error(self, 404, "no such object")
        send_bytes(self, data, f'"{oid}"', {})


def send_bytes(handler: "Handler", data: bytes, etag: str, headers: dict) -> None:
    """A file's bytes, or the range of them asked for (206), with its ETag; the body only for GET."""
    start, end, status = 0, len(data), 200
    m = re.fullmatch(r"bytes=(\d+)-(\d*)", handler.headers.get("Range", ""))
    if m:
        start, end, status = int(m.group(1)), min(int(m.group(2) or len(data) - 1) + 1, len(data)), 206
    handler.send_response(status)
    handler.send_header("Content-Length", str(end - start))
    for k, v in headers.items():
        handler.send_header(k, v)
    handler.send_header("ETag", etag)
    if status == 206:
        handler.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
    handler.send_header("Accept-Ranges", "bytes")
    handler.end_headers()
    if handler.command == "GET":
        handler.wfile.write(data[start:end])


ROUTES = [
    ("POST", r"/api/repos/create", "create_repo"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("POST", rf"/api/models/{REPO}/preupload/(?P<rev>[^/]+)", "preupload"),
    ("POST", rf"/{REPO}\.git/info/lfs/objects/batch", "lfs_batch"),
    ("PUT", r"/lfs-upload/(?P<oid>[0-9a-f]{64})", "lfs_put"),
    ("POST", rf"/api/models/{REPO}/commit/(?P<rev>[^/]+)", "commit"),
    ("POST", rf"/api/models/{REPO}/tag/(?P<rev>[^/]+)", "create_tag"),
    ("GET", rf"/api/models/{REPO}/refs", "refs"),
    ("GET", rf"/api/models/{REPO}/commits/(?P<rev>[^/]+)", "commits"),
    ("GET", rf"/api/models/{REPO}/revision/(?P<rev>[^/]+)", "repo_info"),
    ("GET", rf"/api/models/{REPO}", "repo_info"),
    ("GET", rf"/api/models/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", "tree"),
    ("POST", rf"/api/models/{REPO}/paths-info/(?P<rev>[^/]+)", "paths_info"),
    ("GET", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ("HEAD", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
]
READS = {"paths_info"}  # POSTs that only read: anonymous callers may make them on a public repo
# Storage (the Hub's CDN): another origin, so clients do not send it the Hub token.
STORAGE_ROUTES = [
    ("GET", r"/cdn/(?P<oid>[0-9a-f]{64})", "storage"),
    ("HEAD", r"/cdn/(?P<oid>[0-9a-f]{64})", "storage"),
]


class HubServer:
    """Start with `with HubServer(token="hf_x") as hub:`; `hub.url` is the endpoint, `hub.cdn_url`
    the storage LFS downloads are redirected to. `tree_page_size` makes listings page sooner."""

    def __init__(self, token: "str | None" = None, tree_page_size: int = 1000):
        self.state = HubState(token, tree_page_size)
        handler = type("BoundHandler", (Handler,), {"state": self.state, "routes": ROUTES})
        storage = type("StorageHandler", (Handler,), {"state": self.state, "routes": STORAGE_ROUTES})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.cdn = ThreadingHTTPServer(("127.0.0.1", 0), storage)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.cdn_url = f"http://127.0.0.1:{self.cdn.server_address[1]}"
        for server in (self.httpd, self.cdn):
            server.daemon_threads = True
            server.RequestHandlerClass.base_url = self.url
            server.RequestHandlerClass.cdn_url = self.cdn_url
        self.threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (self.httpd, self.cdn)]

    def __enter__(self) -> "HubServer":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        for server in (self.httpd, self.cdn):
            server.shutdown()
            server.server_close()

    def __getattr__(self, name):  # fail(), head(), file_bytes(), requests, repos
        return getattr(self.state, name)
