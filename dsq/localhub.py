"""A small Hugging Face Hub look-alike on 127.0.0.1, so tests drive the real huggingface_hub client over HTTP.

It implements what `HfApi` calls for publishing and downloading: create-repo, validate-yaml,
pre-upload, the LFS batch API and PUT, NDJSON commits (atomic: files appear only with their
commit; `parentCommit` must be the branch head), tags, refs, commits, repo info and
`/{repo}/resolve/{rev}/{path}` with HTTP Range.

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
from urllib.parse import parse_qs, unquote, urlparse


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


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
    def __init__(self, token: "str | None"):
        self.token = token
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
        path, query = unquote(url.path), parse_qs(url.query)
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
        for method, pattern, name in ROUTES:
            m = re.fullmatch(pattern, path)
            if m and method == self.command:
                # LFS PUTs go to a pre-signed storage URL (as on the Hub), not to the API.
                if method == "POST" and not self._authorized():
                    return _error(self, 401, "Invalid credentials in Authorization header")
                return getattr(self, name)(body=body, query=query, **m.groupdict())
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

    def repo_info(self, repo: str, rev: str = "main", **_) -> None:
        with self.state.lock:
            r = self._repo(repo)
            if r is None:
                return
            commit = self.state._resolve(r, rev)
            if commit is None:
                return _error(self, 404, f"Invalid rev id: {rev}", "RevisionNotFound")
            body = {"id": repo, "modelId": repo, "sha": commit.oid, "private": False,
                    "siblings": [{"rfilename": p} for p in sorted(commit.files)]}
        _json(self, 200, body)

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
        etag = value if kind == "lfs" else git_blob_sha1(data)
        start, end, status = 0, len(data), 200
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if m:
            start, end, status = int(m.group(1)), int(m.group(2) or len(data) - 1) + 1, 206
        self.send_response(status)
        self.send_header("Content-Length", str(end - start))
        self.send_header("X-Repo-Commit", commit.oid)
        self.send_header("ETag", f'"{etag}"')
        if kind == "lfs":
            self.send_header("X-Linked-Etag", f'"{etag}"')
            self.send_header("X-Linked-Size", str(len(data)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(data[start:end])


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
    ("GET", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ("HEAD", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
]


class HubServer:
    """Start with `with HubServer(token="hf_x") as hub:`; `hub.url` is the endpoint."""

    def __init__(self, token: "str | None" = None):
        self.state = HubState(token)
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        handler.base_url = self.url
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "HubServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __getattr__(self, name):  # fail(), head(), file_bytes(), requests, repos
        return getattr(self.state, name)
