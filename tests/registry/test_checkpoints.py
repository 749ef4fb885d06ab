"""registry.checkpoints: a local_path under an import root may name any file; only a JSON config is read."""
from __future__ import annotations

import json
import os
import threading
import time

import pytest

from quant import configs
from registry.checkpoints import MAX_CONFIG_BYTES
from registry.models import Checkpoint
from tests.registry.personas import requester  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db

CONTENTS = {
    "a weights shard": b"\x9c\x00\x00\x00\x00\x00\x00\x00{\"__metadata__\xff\xfe\x80\x81",
    "latin-1 text": "{\"model_type\": \"llama\", \"name\": \"caf\xe9\"}".encode("latin-1"),
    "not JSON": b"model_type: llama\n",
    "deeply nested JSON": b"[" * 100_000 + b"]" * 100_000,
    "JSON that is not an object": b"[1, 2, 3]",
    "JSON with a NUL in a key": json.dumps({"model_type\u0000": "llama"}).encode(),
    "oversized": b"{\"pad\": \"" + b"x" * MAX_CONFIG_BYTES + b"\"}",
}


@pytest.fixture
def root(tmp_path, settings):
    settings.DSQ_IMPORT_ROOTS = [tmp_path]
    return tmp_path


def register(client, local_path):
    return client.post("/api/checkpoints/", {"name": "imported", "family": "x", "local_path": str(local_path)},
                       format="json")


@pytest.mark.parametrize("kind", CONTENTS)
@pytest.mark.parametrize("as_directory", [False, True], ids=["the file", "its directory"])
def test_a_file_that_is_not_a_json_config_is_a_400(requester, root, kind, as_directory):  # noqa: F811
    (root / "config.json").write_bytes(CONTENTS[kind])
    response = register(requester, root if as_directory else root / "config.json")
    assert response.status_code == 400 and response["Content-Type"] == "application/json", response.content[:300]
    assert response.json()["error"] and not Checkpoint.objects.exists()


def _release_readers(fifo, seconds: float = 10) -> None:
    """Open the FIFO's writing end once a reader waits, and close it: a reader that opened it sees EOF."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # ENXIO: no reader yet
            time.sleep(0.05)


def test_a_fifo_is_refused_without_reading_it(requester, root):  # noqa: F811
    os.mkfifo(root / "config.json")  # opening it to read blocks until a writer comes
    threading.Thread(target=_release_readers, args=(root / "config.json",), daemon=True).start()  # never hang
    response = register(requester, root)
    assert response.status_code == 400 and "not a regular file" in response.json()["error"]


def test_a_directory_named_config_json_is_refused(requester, root):  # noqa: F811
    (root / "config.json").mkdir()
    assert "not a regular file" in register(requester, root).json()["error"]


def test_a_real_config_is_read(requester, root):  # noqa: F811
    (root / "config.json").write_text(json.dumps(configs.load_config("DeepSeek-R1-Distill-Qwen-1.5B")))
    response = register(requester, root)
    assert response.status_code == 201 and response.json()["architecture"] == "qwen2"
