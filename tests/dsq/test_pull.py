"""dsq pull: resumable (HTTP Range on .part), verified (sha256), idempotent; against a Range-serving server
and against the registry's own /api/pull and /api/files endpoints."""
from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dsq import cli
from dsq.pull import PullError, pull

FILES = {"m-Q4-00001-of-00002.gguf": b"GGUF" + bytes(range(256)) * 400,
         "m-Q4-00002-of-00002.gguf": b"GGUF" + bytes(reversed(range(256))) * 300}


class FileServer:
    """Serves a pull manifest and files with Range; records every request's Range header."""

    def __init__(self, files: dict[str, bytes], corrupt: "set[str] | None" = None):
        self.files, self.corrupt, self.requests = files, corrupt or set(), []
        server = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range"), self.headers.get("Authorization")))
                if self.path.startswith("/api/pull/"):
                    body = json.dumps({"files": [
                        {"name": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest(), "url": f"/f/{n}"}
                        for n, d in server.files.items()]}).encode()
                    return self._send(200, body, {"Content-Type": "application/json"})
                name = self.path.removeprefix("/f/")
                data = server.files[name]
                if name in server.corrupt:
                    data = data[:-1] + b"X"
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                self._send(206 if start else 200, data[start:],
                           {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"} if start else {})

            def _send(self, status, body, headers):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FileServer(FILES)
    yield s
    s.close()


def test_it_downloads_and_verifies_every_file(server, tmp_path):
    result = pull("m:Q4@stable", tmp_path, server.url, show_progress=False)
    assert {p.name: p.read_bytes() for p in result.files} == FILES
    assert not list(tmp_path.glob("*.part"))


def test_pulling_the_same_tag_twice_downloads_nothing(server, tmp_path):
    pull("m:Q4@stable", tmp_path, server.url, show_progress=False)
    server.requests.clear()
    again = pull("m:Q4@stable", tmp_path, server.url, show_progress=False)
    assert again.downloaded_bytes == 0 and sorted(again.skipped) == sorted(FILES)
    assert [p for p, _, _ in server.requests] == ["/api/pull/m:Q4@stable"]


def test_an_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    name = "m-Q4-00001-of-00002.gguf"
    half = len(FILES[name]) // 2
    (tmp_path / f"{name}.part").write_bytes(FILES[name][:half])
    result = pull("m:Q4@stable", tmp_path, server.url, show_progress=False)
    assert (tmp_path / name).read_bytes() == FILES[name]
    assert (f"/f/{name}", f"bytes={half}-", None) in server.requests
    assert result.downloaded_bytes == sum(len(d) for d in FILES.values()) - half


def test_a_corrupt_download_is_never_moved_into_place(tmp_path):
    server = FileServer(FILES, corrupt={"m-Q4-00002-of-00002.gguf"})
    try:
        with pytest.raises(PullError, match="sha256"):
            pull("m:Q4@stable", tmp_path, server.url, show_progress=False)
    finally:
        server.close()
    assert not (tmp_path / "m-Q4-00002-of-00002.gguf").exists()
    assert not (tmp_path / "m-Q4-00002-of-00002.gguf.part").exists()


def test_the_token_goes_only_to_the_registry(tmp_path):
    registry, other = FileServer(FILES), FileServer(FILES)
    try:
        from dsq import pull as pull_mod

        _, files = pull_mod.fetch_manifest("m:Q4@stable", registry.url, "secret-token")
        f = files[0]
        foreign = pull_mod.RemoteFile(f.name, f.size, f.sha256, other.url + f"/f/{f.name}")
        pull_mod.download(foreign, tmp_path / f.name, registry.url, "secret-token")
    finally:
        registry.close(), other.close()
    assert registry.requests[0][2] == "Token secret-token"
    assert other.requests[0][2] is None


def test_the_command_line_pulls(server, tmp_path, capsys):
    assert cli.main(["pull", "m:Q4@stable", "--to", str(tmp_path), "--registry", server.url, "--quiet"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)


@pytest.mark.django_db(transaction=True)
def test_it_pulls_from_the_registry_api(live_server, settings, tmp_path, django_user_model):
    from registry.models import ArtifactFile, Release, Tag, Variant
    from tests import factories

    settings.DSQ_STORAGE_ROOT = tmp_path / "storage"
    ckpt, rcp = factories.checkpoint("deepseek-r1"), factories.recipe("DQ3_K_M")
    root = settings.DSQ_STORAGE_ROOT / "variants" / "deepseek-r1" / "DQ3_K_M-1"
    root.mkdir(parents=True)
    variant = Variant.objects.create(checkpoint=ckpt, recipe=rcp, status="ready",
                                     storage_path="variants/deepseek-r1/DQ3_K_M-1")
    for name, data in FILES.items():
        (root / name).write_bytes(data)
        ArtifactFile.objects.create(variant=variant, name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    user = django_user_model.objects.create_user("u")
    release = Release.objects.create(variant=variant, version=1, state="approved", requested_by=user)
    Tag.objects.create(checkpoint=ckpt, quant="DQ3_K_M", name="stable", kind="channel", release=release)

    name = "m-Q4-00001-of-00002.gguf"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / f"{name}.part").write_bytes(FILES[name][:1000])
    result = pull("deepseek-r1:DQ3_K_M@stable", tmp_path / "out", live_server.url, show_progress=False)
    assert {p.name: p.read_bytes() for p in result.files} == FILES
    assert result.downloaded_bytes == sum(len(d) for d in FILES.values()) - 1000
    again = pull("deepseek-r1:DQ3_K_M@stable", tmp_path / "out", live_server.url, show_progress=False)
    assert again.downloaded_bytes == 0
