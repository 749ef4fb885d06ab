"""Download a release by tag through the registry's HTTP API: resumable, verified, idempotent.

`GET <registry>/api/pull/<model>:<quant>@<tag>` answers the files (name, size, sha256, url).
Each file is fetched into `<name>.part`, continuing with an HTTP Range request where an
earlier pull stopped, hashed on the way, and renamed into place only once its size and sha256
match. A file already in place with the right size and hash is not downloaded again. The
registry token is sent only to the registry's own origin, never to the Hub or other hosts.
"""
from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import quote, urljoin, urlparse

from quant.hashing import file_sha256

CHUNK = 1 << 20


class PullError(RuntimeError):
    pass


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int
    sha256: str
    url: str


@dataclass
class PullResult:
    files: list[Path]
    downloaded_bytes: int
    skipped: list[str]


def _origin(url: str) -> tuple[str, str, "int | None"]:
    p = urlparse(url)
    return p.scheme, p.hostname or "", p.port


def _request(url: str, registry: str, token: "str | None", headers: "dict | None" = None) -> urllib.request.Request:
    req = urllib.request.Request(url, headers=dict(headers or {}))
    if token and _origin(url) == _origin(registry):
        req.add_header("Authorization", f"Token {token}")
    return req


def fetch_manifest(ref: str, registry: str, token: "str | None" = None) -> tuple[dict, list[RemoteFile]]:
    url = urljoin(registry.rstrip("/") + "/", f"api/pull/{quote(ref, safe=':@')}")
    try:
        with urllib.request.urlopen(_request(url, registry, token), timeout=60) as resp:
            data = json.load(resp)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise PullError(f"{url}: HTTP {exc.code}: {detail}") from None
    files = [RemoteFile(f["name"], int(f["size"]), f["sha256"], urljoin(url, f["url"])) for f in data["files"]]
    for f in files:
        if Path(f.name).name != f.name or f.name in ("", ".", ".."):
            raise PullError(f"refusing file name {f.name!r} from the registry")
    return data, files


def _is_in_place(path: Path, f: RemoteFile) -> bool:
    return path.is_file() and path.stat().st_size == f.size and file_sha256(path) == f.sha256


def download(f: RemoteFile, dest: Path, registry: str, token: "str | None",
             progress: "Callable[[int], None] | None" = None) -> int:
    """Fetch one file into dest (resuming dest.part); returns the bytes transferred."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if have > f.size:
        part.unlink()
        have = 0
    h = hashlib.sha256()
    if have:
        with open(part, "rb") as existing:
            for chunk in iter(lambda: existing.read(CHUNK), b""):
                h.update(chunk)
        if progress:
            progress(have)
    transferred = 0
    if have < f.size:
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            resp = urllib.request.urlopen(_request(f.url, registry, token, headers), timeout=60)
        except urllib.error.HTTPError as exc:
            raise PullError(f"{f.name}: HTTP {exc.code} from {f.url}") from None
        with resp:
            mode = "ab"
            if have and resp.status != 206:  # the server ignored the range: start over
                h, have, mode = hashlib.sha256(), 0, "wb"
            with open(part, mode) as out:
                for chunk in iter(lambda: resp.read(CHUNK), b""):
                    out.write(chunk)
                    h.update(chunk)
                    transferred += len(chunk)
                    if progress:
                        progress(len(chunk))
                out.flush()
                os.fsync(out.fileno())
    size = part.stat().st_size
    if size != f.size or h.hexdigest() != f.sha256:
        part.unlink(missing_ok=True)
        raise PullError(f"{f.name}: got {size} bytes with sha256 {h.hexdigest()}, expected {f.size} bytes "
                        f"with sha256 {f.sha256}; the partial file was removed, run the pull again")
    os.replace(part, dest)
    return transferred


def pull(ref: str, to: "str | Path", registry: str, token: "str | None" = None, show_progress: bool = True) -> PullResult:
    """Download every file of `ref` (model:quant@tag) into `to`."""
    dest_dir = Path(to)
    dest_dir.mkdir(parents=True, exist_ok=True)
    _, files = fetch_manifest(ref, registry, token)
    done, skipped, total = [], [], 0
    for f in files:
        dest = dest_dir / f.name
        if _is_in_place(dest, f):
            skipped.append(f.name)
        else:
            bar = _bar(f, show_progress)
            try:
                total += download(f, dest, registry, token, bar.update if bar else None)
            finally:
                if bar:
                    bar.close()
        done.append(dest)
    return PullResult(done, total, skipped)


def _bar(f: RemoteFile, show: bool):
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=f.size, unit="B", unit_scale=True, unit_divisor=1024, desc=f.name)
