"""The sha256 of a file: how dsq checks what it writes, registers, caches and pulls."""
from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK_BYTES = 1 << 20


def file_sha256(path: "str | Path") -> str:
    """Hex sha256 of a file's bytes, read a chunk at a time so a 300 GB GGUF never sits in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
