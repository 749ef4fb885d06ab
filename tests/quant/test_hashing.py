"""file_sha256: the digest of the whole file, however many chunks it is read in."""
from __future__ import annotations

import hashlib

from quant.hashing import CHUNK_BYTES, file_sha256


def test_a_file_of_several_chunks_hashes_as_its_bytes_do(tmp_path):
    data = bytes(range(256)) * (2 * CHUNK_BYTES // 256) + b"tail"
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_an_empty_file_has_the_empty_digest(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert file_sha256(str(path)) == hashlib.sha256(b"").hexdigest()
