"""The Hub stand-in answers what the real huggingface_hub client calls to read a repo: tree listings
(recursive, paged), paths-info, revisions by tag and by commit, and resolve with the Hub's headers
and redirects. Every call here goes through huggingface_hub over HTTP."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_XET", "1")  # before huggingface_hub reads its constants

import pytest

from dsq.localhub import HubServer, git_blob_sha1

TOKEN = "hf_test_localhub_0123456789abcdefghijklmnop"
REPO = "dsq-test/m-GGUF"
V1 = {
    "README.md": b"# m\n",
    "Q4_K_M/m-Q4_K_M.gguf": b"GGUF" + b"\x04" * 3000,
    "dynamic/DQ3_K_M/m-DQ3_K_M-00001-of-00002.gguf": b"GGUF" + b"\x03" * 2000,
    "dynamic/DQ3_K_M/m-DQ3_K_M-00002-of-00002.gguf": b"GGUF" + b"\x13" * 1000,
}
V2 = {"Q3_K_M/m-Q3_K_M.gguf": b"GGUF" + b"\x33" * 2500, "README.md": b"# m, two releases\n"}


@pytest.fixture
def no_xet(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)


def publish(hub: HubServer) -> dict[str, str]:
    """Two commits, tagged v1 and v2, made with the real client; returns {tag: commit}."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo(REPO)
    commits = {}
    for tag, files in (("v1", V1), ("v2", V2)):
        ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=data) for p, data in files.items()]
        commits[tag] = api.create_commit(REPO, ops, commit_message=tag).oid
        api.create_tag(REPO, tag=tag, revision=commits[tag])
    return commits


@pytest.fixture
def hub(no_xet):
    with HubServer(token=TOKEN) as server:
        server.commits_by_tag = publish(server)
        yield server


def api(hub: HubServer, token: "str | None" = None):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.url, token=token or False)


def test_it_lists_every_file_recursively_in_the_hubs_order(hub):
    files = api(hub).list_repo_files(REPO)
    # Git's tree order (byte order, a folder compared as "name/"), as the Hub answers it.
    assert files == ["Q3_K_M/m-Q3_K_M.gguf", "Q4_K_M/m-Q4_K_M.gguf", "README.md",
                     "dynamic/DQ3_K_M/m-DQ3_K_M-00001-of-00002.gguf", "dynamic/DQ3_K_M/m-DQ3_K_M-00002-of-00002.gguf"]
    assert api(hub).list_repo_files(REPO, revision="v1") == sorted(V1)


def test_it_lists_one_folder_with_or_without_recursion(hub):
    from huggingface_hub.hf_api import RepoFile, RepoFolder

    top = list(api(hub).list_repo_tree(REPO, path_in_repo="dynamic"))
    assert [(type(e), e.path) for e in top] == [(RepoFolder, "dynamic/DQ3_K_M")]
    deep = list(api(hub).list_repo_tree(REPO, path_in_repo="dynamic", recursive=True))
    assert [(type(e), e.path) for e in deep] == [
        (RepoFolder, "dynamic/DQ3_K_M"),
        (RepoFile, "dynamic/DQ3_K_M/m-DQ3_K_M-00001-of-00002.gguf"),
        (RepoFile, "dynamic/DQ3_K_M/m-DQ3_K_M-00002-of-00002.gguf")]
    shard = deep[1]
    data = V1[shard.path]
    assert shard.size == len(data) and shard.lfs.sha256 == hashlib.sha256(data).hexdigest()
    assert shard.lfs.size == len(data) and shard.blob_id != shard.lfs.sha256


def test_a_missing_folder_or_revision_is_a_404_the_client_names(hub):
    from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

    with pytest.raises(EntryNotFoundError):
        list(api(hub).list_repo_tree(REPO, path_in_repo="nowhere"))
    with pytest.raises(RevisionNotFoundError):
        api(hub).list_repo_files(REPO, revision="v9")


def test_a_long_listing_is_paged_with_link_headers(no_xet):
    with HubServer(token=TOKEN, tree_page_size=2) as hub:
        publish(hub)
        before = len(hub.requests)
        files = api(hub).list_repo_files(REPO)
        pages = [p for m, p, _ in hub.requests[before:] if "/tree/" in p]
    assert len(files) == 5 and len(set(files)) == 5
    assert len(pages) == 5  # 9 entries (four folders, five files) two by two


def test_paths_info_answers_the_paths_that_exist(hub):
    from huggingface_hub.hf_api import RepoFile, RepoFolder

    infos = api(hub).get_paths_info(REPO, ["README.md", "Q4_K_M", "Q4_K_M/m-Q4_K_M.gguf", "nope.txt"],
                                    revision="v1")
    assert [(type(i), i.path) for i in infos] == [(RepoFile, "README.md"), (RepoFolder, "Q4_K_M"),
                                                  (RepoFile, "Q4_K_M/m-Q4_K_M.gguf")]
    readme, _, gguf = infos
    assert readme.lfs is None and readme.blob_id == git_blob_sha1(V1["README.md"])
    assert gguf.lfs.sha256 == hashlib.sha256(V1["Q4_K_M/m-Q4_K_M.gguf"]).hexdigest()


def test_a_revision_resolves_by_branch_tag_and_commit(hub):
    from huggingface_hub.errors import RevisionNotFoundError

    v1, v2 = hub.commits_by_tag["v1"], hub.commits_by_tag["v2"]
    assert api(hub).repo_info(REPO, revision="v1").sha == v1
    assert api(hub).repo_info(REPO, revision=v1).sha == v1
    assert api(hub).repo_info(REPO, revision="main").sha == v2
    with pytest.raises(RevisionNotFoundError):
        api(hub).repo_info(REPO, revision="0" * 40)


@pytest.mark.parametrize("revision", ["v1", "commit"])
def test_snapshot_download_gets_exactly_the_files_of_a_tag_or_commit(hub, tmp_path, revision):
    from huggingface_hub import snapshot_download

    rev = hub.commits_by_tag["v1"] if revision == "commit" else "v1"
    folder = Path(snapshot_download(REPO, revision=rev, endpoint=hub.url, cache_dir=tmp_path / "cache"))
    got = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert got == V1
    assert folder.name == hub.commits_by_tag["v1"]


def test_resolve_answers_the_headers_hf_hub_download_needs(hub):
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    v1 = hub.commits_by_tag["v1"]
    lfs = "Q4_K_M/m-Q4_K_M.gguf"
    meta = get_hf_file_metadata(hf_hub_url(REPO, lfs, revision="v1", endpoint=hub.url), token=TOKEN)
    data = V1[lfs]
    assert (meta.commit_hash, meta.etag, meta.size) == (v1, hashlib.sha256(data).hexdigest(), len(data))
    assert meta.location.startswith(hub.cdn_url)  # an LFS file redirects to storage, as on the Hub
    small = get_hf_file_metadata(hf_hub_url(REPO, "README.md", revision=v1, endpoint=hub.url))
    assert (small.commit_hash, small.etag, small.size) == (v1, git_blob_sha1(V1["README.md"]), len(V1["README.md"]))


def test_downloads_follow_the_redirect_and_storage_never_sees_the_token(hub, tmp_path):
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(REPO, "Q4_K_M/m-Q4_K_M.gguf", revision="v1", endpoint=hub.url, token=TOKEN,
                           cache_dir=tmp_path / "cache")
    assert Path(path).read_bytes() == V1["Q4_K_M/m-Q4_K_M.gguf"]
    to_storage = [h for m, p, h in hub.requests if p.startswith("/cdn/")]
    assert to_storage and all("authorization" not in h for h in to_storage)
    assert any(h.get("authorization") == f"Bearer {TOKEN}" for m, p, h in hub.requests if "/resolve/" in p)


def test_a_range_request_on_storage_answers_206(hub):
    import urllib.request

    sha = hashlib.sha256(V1["Q4_K_M/m-Q4_K_M.gguf"]).hexdigest()
    url = f"{hub.url}/{REPO}/resolve/v1/Q4_K_M/m-Q4_K_M.gguf"
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=10-"})) as resp:
        assert resp.status == 206 and resp.headers["ETag"] == f'"{sha}"'
        assert resp.read() == V1["Q4_K_M/m-Q4_K_M.gguf"][10:]


def test_dsq_pull_resumes_a_hub_file_through_the_redirect(hub, tmp_path):
    from dsq.pull import RemoteFile, download

    data = V1["Q4_K_M/m-Q4_K_M.gguf"]
    url = f"{hub.url}/{REPO}/resolve/{hub.commits_by_tag['v1']}/Q4_K_M/m-Q4_K_M.gguf"
    (tmp_path / "m.gguf.part").write_bytes(data[:1000])  # an earlier pull stopped here
    f = RemoteFile("m.gguf", len(data), hashlib.sha256(data).hexdigest(), url)
    before = len(hub.requests)
    assert download(f, tmp_path / "m.gguf", "http://registry.invalid", "registry-token") == len(data) - 1000
    assert (tmp_path / "m.gguf").read_bytes() == data
    asked = hub.requests[before:]
    assert [(p.split("/")[1], h.get("range")) for m, p, h in asked] == [(REPO.split("/")[0], "bytes=1000-"),
                                                                       ("cdn", "bytes=1000-")]
    assert all("authorization" not in h for m, p, h in asked)  # the registry's token stays with the registry


def test_it_answers_the_calls_llama_cpps_hf_download_makes(hub):
    """The HTTP calls of llama.cpp's `-hf` (vendored common/hf-cache.cpp and download.cpp), made with
    urllib the same way; the binary itself runs in tests/registry/test_hub.py."""
    import json
    import urllib.request

    from registry.hub import llama_cpp_choice

    endpoint = hub.url + "/"  # MODEL_ENDPOINT, with the slash llama.cpp appends

    def get_json(url):
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "application/json"})) as r:
            return json.load(r)

    branches = get_json(f"{endpoint}api/models/{REPO}/refs")["branches"]
    commit = next(b["targetCommit"] for b in branches if b["name"] == "main")
    assert len(commit) == 40 and int(commit, 16) >= 0
    tree = get_json(f"{endpoint}api/models/{REPO}/tree/{commit}?recursive=true")
    files = {e["path"]: e for e in tree if e["type"] == "file"}  # one page: llama.cpp follows no Link header
    assert set(files) == set(V1) | set(V2)
    chosen = llama_cpp_choice(list(files), "DQ3_K_M")
    assert chosen == "dynamic/DQ3_K_M/m-DQ3_K_M-00001-of-00002.gguf"
    assert files[chosen]["lfs"]["oid"] == hashlib.sha256(V1[chosen]).hexdigest()  # its blob's name in the cache
    url = f"{endpoint}{REPO}/resolve/{commit}/{chosen}"
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as head:  # redirects followed
        assert head.status == 200 and head.headers["ETag"] and head.headers["Accept-Ranges"] == "bytes"
        assert int(head.headers["Content-Length"]) == len(V1[chosen])
    with urllib.request.urlopen(url) as resp:
        assert resp.read() == V1[chosen]
