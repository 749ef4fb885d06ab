"""GET /api/files/<variant-id>/<name>: a variant's file from DSQ_STORAGE_ROOT, with HTTP Range.

Only names recorded as ArtifactFile rows of the variant are served, and the resolved path must
stay under the storage root, so `..`, absolute names and symlinks out of the root all get 404.

Files of a variant with an approved or published release are public. The others (the F16/Q8_0
reference, quants no human approved yet) go only to the requester of the job that made the
variant and to approvers (token or admin session); everyone else gets the same 404 as for a
file that does not exist, so unreleased variants' file names are not confirmed either.
GET, HEAD and Range requests are all checked before the file is opened.
"""
from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny

from registry.access import can_read_files
from registry.api import schema
from registry.models import ArtifactFile, released

CHUNK = 1 << 20
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def artifact_path(artifact: ArtifactFile) -> Path:
    root = Path(settings.DSQ_STORAGE_ROOT).resolve()
    path = (root / artifact.variant.storage_path / artifact.name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise Http404(f"{artifact.name} is not in storage")
    return path


def parse_range(header: str, size: int) -> "tuple[int, int] | None":
    """(first, last) byte of a single `bytes=` range; None to send everything; ValueError if unsatisfiable."""
    m = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if not m or (not m[1] and not m[2]):
        return None  # several ranges or a syntax we do not serve: RFC 9110 allows ignoring Range
    if not m[1]:
        suffix = int(m[2])
        if suffix == 0:
            raise ValueError("empty suffix range")
        return max(0, size - suffix), size - 1
    first = int(m[1])
    last = min(int(m[2]), size - 1) if m[2] else size - 1
    if first >= size or (m[2] and int(m[2]) < first):
        raise ValueError("range not satisfiable")
    return first, last


def _stream(path: Path, first: int, length: int):
    with path.open("rb") as f:
        f.seek(first)
        while length > 0:
            chunk = f.read(min(CHUNK, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk


@schema.download
@api_view(["GET", "HEAD"])
@permission_classes([AllowAny])
def download(request, variant_id: int, name: str):
    artifact = ArtifactFile.objects.select_related("variant").filter(variant_id=variant_id, name=name).first()
    if artifact is None or not can_read_files(request.user, artifact.variant):
        raise Http404(f"no file {name!r} in variant {variant_id}")
    path = artifact_path(artifact)
    size = path.stat().st_size
    headers = {"Accept-Ranges": "bytes", "ETag": f'"{artifact.sha256}"',
               "Content-Disposition": f'attachment; filename="{Path(artifact.name).name}"'}
    if not released(artifact.variant_id):  # a shared cache must not hand it to the next reader
        headers["Cache-Control"] = "private"
    try:
        wanted = parse_range(request.headers.get("Range", ""), size) if request.headers.get("Range") else None
    except ValueError:
        return JsonResponse({"error": f"range {request.headers['Range']!r} is not satisfiable for {size} bytes",
                             "status": 416}, status=416, headers={"Content-Range": f"bytes */{size}"})
    first, last = wanted if wanted else (0, size - 1)
    length = max(0, last - first + 1)
    if request.method == "HEAD":
        response = HttpResponse(status=206 if wanted else 200, content_type="application/octet-stream", headers=headers)
    elif not wanted:
        # A whole file goes out through the server's wsgi.file_wrapper (sendfile under gunicorn):
        # about 10x the throughput of yielding chunks through Python (scripts/load_test.py).
        response = FileResponse(path.open("rb"), content_type="application/octet-stream", headers=headers)
    else:
        response = StreamingHttpResponse(_stream(path, first, length), status=206 if wanted else 200,
                                         content_type="application/octet-stream", headers=headers)
    response["Content-Length"] = str(length)
    if wanted:
        response["Content-Range"] = f"bytes {first}-{last}/{size}"
    return response
