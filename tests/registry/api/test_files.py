"""GET /api/files/<variant-id>/<name>: whole files, byte ranges, and nothing outside storage."""
from __future__ import annotations

import pytest

from registry.models import ArtifactFile
from tests import factories

pytestmark = pytest.mark.django_db
DATA = bytes(range(256)) * 4


@pytest.fixture
def variant(storage):
    return factories.variant(storage=storage, files={"model.gguf": DATA})


def url(v, name="model.gguf"):
    return f"/api/files/{v.pk}/{name}"


def test_it_serves_the_whole_file(anonymous, variant):
    response = anonymous.get(url(variant))
    assert response.status_code == 200 and b"".join(response.streaming_content) == DATA
    assert response["Accept-Ranges"] == "bytes" and response["Content-Length"] == str(len(DATA))


@pytest.mark.parametrize("header,first,last", [("bytes=10-19", 10, 19), ("bytes=1000-", 1000, 1023),
                                               ("bytes=-24", 1000, 1023), ("bytes=1020-5000", 1020, 1023)])
def test_it_serves_a_range(anonymous, variant, header, first, last):
    response = anonymous.get(url(variant), HTTP_RANGE=header)
    assert response.status_code == 206
    assert b"".join(response.streaming_content) == DATA[first:last + 1]
    assert response["Content-Range"] == f"bytes {first}-{last}/1024"


def test_an_unsatisfiable_range_is_416_with_json(anonymous, variant):
    response = anonymous.get(url(variant), HTTP_RANGE="bytes=5000-")
    assert response.status_code == 416 and response["Content-Range"] == "bytes */1024"
    assert "not satisfiable" in response.json()["error"]


def test_head_gives_the_size_without_a_body(anonymous, variant):
    response = anonymous.head(url(variant))
    assert response.status_code == 200 and response["Content-Length"] == "1024" and response.content == b""


@pytest.mark.parametrize("name", ["../model.gguf", "..%2F..%2Fetc%2Fpasswd", "/etc/passwd", "other.gguf"])
def test_it_serves_only_recorded_files(anonymous, variant, name):
    response = anonymous.get(url(variant, name))
    assert response.status_code == 404 and "error" in response.json()


def test_a_recorded_name_that_escapes_storage_is_refused(anonymous, variant, storage, tmp_path):
    (tmp_path / "secret.txt").write_text("secret")
    assert (storage / variant.storage_path / "../../../../secret.txt").resolve().is_file()  # the name does escape
    ArtifactFile.objects.create(variant=variant, name="../../../../secret.txt", size=6, sha256="0" * 64)
    response = anonymous.get(url(variant, "../../../../secret.txt"))
    assert response.status_code == 404 and "not in storage" in response.json()["error"]
