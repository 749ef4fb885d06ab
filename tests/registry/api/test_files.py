"""GET /api/files/<variant-id>/<name>: whole files, byte ranges, nothing outside storage, and
the files of unreleased variants only for the job's requester and approvers."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from registry.models import ArtifactFile
from tests import factories
from tests.registry.personas import make_approver

pytestmark = pytest.mark.django_db
DATA = bytes(range(256)) * 4


@pytest.fixture
def unreleased(storage):
    """A ready variant no human approved: what a quantization or the F16 reference leaves behind."""
    return factories.variant(storage=storage, files={"model.gguf": DATA})


@pytest.fixture
def variant(unreleased, settings):
    """The same variant once a release of it is approved: its files are public."""
    settings.DSQ_PUBLISH_ON_APPROVAL = False
    factories.release(unreleased, by=User.objects.create_user("rita-2")).approve(make_approver("carol"))
    return unreleased


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


def test_a_recorded_name_that_escapes_storage_is_refused(approver, unreleased, storage, tmp_path):
    (tmp_path / "secret.txt").write_text("secret")
    assert (storage / unreleased.storage_path / "../../../../secret.txt").resolve().is_file()  # the name does escape
    ArtifactFile.objects.create(variant=unreleased, name="../../../../secret.txt", size=6, sha256="0" * 64)
    response = approver.get(url(unreleased, "../../../../secret.txt"))
    assert response.status_code == 404 and "not in storage" in response.json()["error"]


REQUESTS = {"GET": {}, "HEAD": {}, "Range": {"HTTP_RANGE": "bytes=0-9"}}


def fetch(client, v, how: str, name: str = "model.gguf"):
    call = client.head if how == "HEAD" else client.get
    return call(url(v, name), **REQUESTS[how])


@pytest.mark.parametrize("how", REQUESTS)
@pytest.mark.parametrize("persona", ["anonymous", "teammate"])
def test_files_of_an_unreleased_variant_are_not_found_for_others(request, unreleased, persona, how):
    client = request.getfixturevalue(persona)
    response = fetch(client, unreleased, how)
    assert response.status_code == 404 and "Content-Range" not in response
    assert not getattr(response, "streaming", False)  # the file was never opened


@pytest.mark.parametrize("persona", ["anonymous", "teammate"])
def test_a_withheld_file_looks_exactly_like_a_missing_one(request, unreleased, persona):
    client = request.getfixturevalue(persona)
    withheld = client.get(url(unreleased, "model.gguf")).json()
    missing = client.get(url(unreleased, "other.gguf")).json()
    assert withheld == {**missing, "error": missing["error"].replace("other.gguf", "model.gguf")}


@pytest.mark.parametrize("how,status", [("GET", 200), ("HEAD", 200), ("Range", 206)])
def test_the_jobs_requester_and_approvers_read_unreleased_files(requester, approver, unreleased, how, status):
    factories.quantization_job(unreleased.checkpoint, unreleased.recipe, requested_by=requester.user,
                               variant=unreleased, state="succeeded")
    for client in (requester, approver):
        response = fetch(client, unreleased, how)
        assert response.status_code == status and response["Cache-Control"] == "private"
        if how != "HEAD":
            body = b"".join(response.streaming_content)
            assert body == (DATA[:10] if how == "Range" else DATA)


def test_an_approver_reads_unreleased_files_with_the_admin_session(client, unreleased):
    approver = make_approver("sam")
    client.force_login(approver)
    response = client.get(url(unreleased))
    assert response.status_code == 200 and b"".join(response.streaming_content) == DATA


def test_requesting_a_release_does_not_open_the_files(teammate, unreleased):
    """Anyone signed in may propose a release: a candidate is not an approval."""
    factories.release(unreleased, by=teammate.user)
    assert teammate.get(url(unreleased)).status_code == 404


def test_released_files_are_public_and_cacheable(anonymous, variant):
    response = anonymous.get(url(variant))
    assert response.status_code == 200 and "Cache-Control" not in response
