"""Importance matrices in llama.cpp's two file formats.

* legacy ``.dat`` (llama-imatrix before the GGUF format): ``int32 n_entries``, then per
  entry ``int32 len, name, int32 ncall, int32 nval, float32[nval]``, optionally followed
  by ``int32 chunk_count, int32 len, dataset``. The stored values are sums already
  divided by the per-entry count and multiplied back by ncall; llama-quantize divides by
  ncall.
* GGUF: per tensor ``<name>.in_sum2`` (F32, [n_mat, n_per_row] in PyTorch order) and
  ``<name>.counts`` (F32, [n_mat]), plus ``imatrix.datasets``, ``imatrix.chunk_count``,
  ``imatrix.chunk_size``; llama-quantize uses in_sum2 / count per matrix (1 where a
  matrix was never hit).

Either way the result per GGUF tensor name is a float32 vector of n_mat * n_per_row
values: for a 3-D expert tensor, expert e's rows are quantized with slice
``[e * n_per_row : (e + 1) * n_per_row]`` (llama-quant.cpp, ``imatrix_for_row``).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np
import torch


class ImatrixError(ValueError):
    pass


@dataclass
class Imatrix:
    data: dict[str, torch.Tensor]  # GGUF tensor name -> float32 [n_mat * n_per_row]
    datasets: list[str] = field(default_factory=list)
    chunk_count: int = 0
    path: "Path | None" = None

    def for_tensor(self, name: str, n_per_row: int, n_mat: int) -> "torch.Tensor | None":
        """[n_mat, n_per_row] weights for a tensor, None if the file has none for it.

        A size mismatch is an error (llama-quantize aborts too), except for token_embd,
        which llama-imatrix never sees as a matmul input."""
        v = self.data.get(name)
        if v is None:
            return None
        if v.numel() != n_per_row * n_mat:
            if name in ("token_embd.weight", "per_layer_token_embd.weight"):
                return None
            raise ImatrixError(f"imatrix size {v.numel()} is different from tensor size {n_per_row * n_mat} for {name}")
        return v.reshape(n_mat, n_per_row)


def _check_finite(name: str, v: np.ndarray) -> None:
    if not np.isfinite(v).all():
        raise ImatrixError(f"imatrix entry {name} contains non-finite values")


def load_imatrix(path: "str | Path") -> Imatrix:
    """Read either format (GGUF first, as llama.cpp does) into normalised weights."""
    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == b"GGUF":
        return _load_gguf(path)
    return _load_legacy(path)


def _load_legacy(path: Path) -> Imatrix:
    raw = path.read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(raw):
            raise ImatrixError(f"{path}: truncated legacy imatrix")
        vals = struct.unpack_from(fmt, raw, pos)
        pos += size
        return vals

    (n_entries,) = take("<i")
    if n_entries < 1:
        raise ImatrixError(f"{path}: no data in imatrix file")
    data: dict[str, torch.Tensor] = {}
    for _ in range(n_entries):
        (n,) = take("<i")
        name = raw[pos : pos + n].decode("utf-8")
        pos += n
        ncall, nval = take("<ii")
        if nval < 1:
            raise ImatrixError(f"{path}: entry {name} has {nval} values")
        if pos + 4 * nval > len(raw):
            raise ImatrixError(f"{path}: truncated data for {name}")
        v = np.frombuffer(raw, dtype="<f4", count=nval, offset=pos).astype(np.float32)
        pos += 4 * nval
        if ncall > 0:
            v = v / np.float32(ncall)
        _check_finite(name, v)
        data[name] = torch.from_numpy(v.copy())
    chunk_count, datasets = 0, []
    if pos + 4 <= len(raw):
        (chunk_count,) = take("<i")
        if pos + 4 <= len(raw):
            (n,) = take("<i")
            if n > 0:
                datasets.append(raw[pos : pos + n].decode("utf-8", "replace"))
    return Imatrix(data, datasets, chunk_count, path)


def _load_gguf(path: Path) -> Imatrix:
    r = gguf.GGUFReader(path)
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for t in r.tensors:
        if t.tensor_type != gguf.GGMLQuantizationType.F32:
            raise ImatrixError(f"{path}: {t.name} must be F32")
        if t.name.endswith(".in_sum2"):
            sums[t.name[: -len(".in_sum2")]] = np.asarray(t.data, dtype=np.float32).reshape(-1)
        elif t.name.endswith(".counts"):
            counts[t.name[: -len(".counts")]] = np.asarray(t.data, dtype=np.float32).reshape(-1)
    if not sums:
        raise ImatrixError(f"{path}: no data in imatrix file")
    if set(sums) != set(counts):
        raise ImatrixError(f"{path}: mismatched sums and counts for {sorted(set(sums) ^ set(counts))[:4]}")
    for key in ("imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"):
        if key not in r.fields:
            raise ImatrixError(f"{path}: missing imatrix metadata {key}")
    data = {}
    for name, s in sums.items():
        c = np.rint(counts[name]).astype(np.int64)
        per = s.reshape(len(c), -1)
        out = np.ones_like(per)
        hit = c > 0
        out[hit] = per[hit] / c[hit, None].astype(np.float32)
        v = out.reshape(-1)
        _check_finite(name, v)
        data[name] = torch.from_numpy(v.astype(np.float32))
    datasets = list(r.fields["imatrix.datasets"].contents())
    return Imatrix(data, datasets, int(r.fields["imatrix.chunk_count"].contents()), path)


# -- writers (for tests and tools that produce importance data) -------------------------------------


def save_legacy(path: "str | Path", entries: dict[str, tuple[int, np.ndarray]], chunk_count: int = 0, dataset: str = "") -> None:
    """entries: name -> (ncall, stored values) written verbatim."""
    parts = [struct.pack("<i", len(entries))]
    for name, (ncall, values) in entries.items():
        b = name.encode()
        v = np.ascontiguousarray(values, dtype="<f4").reshape(-1)
        parts += [struct.pack("<i", len(b)), b, struct.pack("<ii", ncall, v.size), v.tobytes()]
    parts.append(struct.pack("<i", chunk_count))
    d = dataset.encode()
    parts += [struct.pack("<i", len(d)), d]
    Path(path).write_bytes(b"".join(parts))


def save_gguf(path: "str | Path", entries: dict[str, tuple[np.ndarray, np.ndarray]], datasets: list[str], chunk_count: int, chunk_size: int) -> None:
    """entries: name -> (in_sum2 [n_mat, n_per_row], counts [n_mat])."""
    w = gguf.GGUFWriter(str(path), arch="imatrix")
    w.add_type("imatrix")
    w.add_array("imatrix.datasets", datasets)
    w.add_uint32("imatrix.chunk_count", chunk_count)
    w.add_uint32("imatrix.chunk_size", chunk_size)
    for name, (s, c) in entries.items():
        s = np.ascontiguousarray(s, dtype=np.float32)
        w.add_tensor(f"{name}.in_sum2", s.reshape(len(c), -1))
        w.add_tensor(f"{name}.counts", np.ascontiguousarray(c, dtype=np.float32).reshape(len(c), 1))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
