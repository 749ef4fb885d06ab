"""Hand-built GGUF bytes for the bad-input tests: every field written explicitly, so a test can
make any one of them lie (counts, lengths, types, offsets) while the rest stay well-formed."""
from __future__ import annotations

import struct

import numpy as np

MAGIC = 0x46554747  # b"GGUF" read as a little-endian uint32
STRING, ARRAY, UINT32 = 8, 9, 4
F32 = 0


def string(s: "str | bytes") -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def kv_string(key: str, value: str) -> bytes:
    return string(key) + struct.pack("<I", STRING) + string(value)


def kv_u32(key: str, value: int) -> bytes:
    return string(key) + struct.pack("<I", UINT32) + struct.pack("<I", value)


def tensor_info(name: "str | bytes", dims: tuple[int, ...], ggml_type: int = F32, offset: int = 0) -> bytes:
    """dims in ggml order (ne[0] first)."""
    return string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims) + struct.pack("<IQ", ggml_type, offset)


def gguf_file(kvs: list[bytes], infos: list[bytes], data: bytes, *, n_tensors: "int | None" = None,
              n_kv: "int | None" = None, magic: int = MAGIC, version: int = 3) -> bytes:
    head = struct.pack("<IIQQ", magic, version, len(infos) if n_tensors is None else n_tensors,
                       len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(infos)
    return body + b"\0" * (-len(body) % 32) + data


def valid_gguf(arch: str = "llama") -> bytes:
    """Two F32 tensors: a [2, 8] weight (ne = 8, 2) and an [8] norm, 32-byte aligned."""
    a = np.arange(16, dtype=np.float32).tobytes()
    b = np.ones(8, dtype=np.float32).tobytes()
    return gguf_file(
        [kv_string("general.architecture", arch), kv_u32(f"{arch}.block_count", 1)],
        [tensor_info("blk.0.attn_q.weight", (8, 2), offset=0), tensor_info("output_norm.weight", (8,), offset=64)],
        a + b,
    )
