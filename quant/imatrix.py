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
from typing import Callable, Iterator, Mapping

import gguf
import numpy as np
import torch

from quant.gguf_file import GGUFFormatError, open_gguf


class ImatrixError(ValueError):
    """An importance matrix that is malformed or does not fit the model; the message names
    the file and the entry."""


class _Entries(Mapping):
    """GGUF tensor name -> normalised float32 weights, read from the file when asked for, so
    a DeepSeek-V3 imatrix (about 1 GB of per-expert values) never sits in memory whole."""

    def __init__(self, sizes: dict[str, int], load: Callable[[str], np.ndarray]):
        self._names = list(sizes)
        self.sizes = sizes  # values per entry, known from the file's index without reading them
        self._load = load

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._names:
            raise KeyError(name)
        return torch.from_numpy(self._load(name))

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names


@dataclass
class Imatrix:
    data: Mapping[str, torch.Tensor]  # GGUF tensor name -> float32 [n_mat * n_per_row]
    datasets: list[str] = field(default_factory=list)
    chunk_count: int = 0
    path: "Path | None" = None

    def for_tensor(self, name: str, n_per_row: int, n_mat: int) -> "torch.Tensor | None":
        """[n_mat, n_per_row] weights for a tensor, None if the file has none for it.

        A size mismatch is an error (llama-quantize aborts too), except for token_embd,
        which llama-imatrix never sees as a matmul input."""
        if not self.fits(name, n_per_row, n_mat):
            return None
        return self.data[name].reshape(n_mat, n_per_row)

    def fits(self, name: str, n_per_row: int, n_mat: int) -> bool:
        """Whether the file has an entry for the tensor (False if not); a mismatched size
        (another model's imatrix, a different expert count) is an ImatrixError. Cheap: the
        converter asks for every tensor while planning, before anything is written."""
        if name not in self.data:
            return False
        size = self.data.sizes[name] if isinstance(self.data, _Entries) else self.data[name].numel()
        if size != n_per_row * n_mat:
            if name in ("token_embd.weight", "per_layer_token_embd.weight"):
                return False
            raise ImatrixError(
                f"{self.path}: imatrix size {size} is different from tensor size {n_per_row * n_mat} for {name} "
                f"({n_mat} matrices x {n_per_row}): an imatrix of another model?"
            )
        return True


def _check_finite(path: Path, name: str, v: np.ndarray) -> None:
    if not np.isfinite(v).all():
        raise ImatrixError(f"{path}: entry {name} contains non-finite values")


def load_imatrix(path: "str | Path") -> Imatrix:
    """Open either format (GGUF first, as llama.cpp does). Every entry is read once here to
    check it is finite (llama-quantize refuses NaN/Inf up front too), then dropped; values
    are read again per tensor during the conversion."""
    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(4)
    im = _load_gguf(path) if magic == b"GGUF" else _load_legacy(path)
    for name in im.data:
        _check_finite(path, name, im.data[name].numpy())
    return im


def _load_legacy(path: Path) -> Imatrix:
    size = path.stat().st_size
    index: dict[str, tuple[int, int, int]] = {}  # name -> (offset of values, ncall, nval)
    with open(path, "rb") as fh:

        def take(fmt: str):
            raw = fh.read(struct.calcsize(fmt))
            if len(raw) != struct.calcsize(fmt):
                raise ImatrixError(f"{path}: truncated legacy imatrix")
            return struct.unpack(fmt, raw)

        (n_entries,) = take("<i")
        if n_entries < 1:
            raise ImatrixError(f"{path}: no data in imatrix file")
        if n_entries * 16 > size:  # each entry: name length, >= 1 name byte, ncall, nval, >= 1 value
            raise ImatrixError(f"{path}: claims {n_entries} entries, more than its {size} bytes can hold")
        for i in range(n_entries):
            (n,) = take("<i")
            if not 0 < n <= size - fh.tell():
                raise ImatrixError(f"{path}: entry {i} has a name of {n} bytes: truncated or not an imatrix")
            try:
                name = fh.read(n).decode("utf-8")
            except UnicodeDecodeError:
                raise ImatrixError(f"{path}: entry {i} has a name that is not UTF-8") from None
            if name in index:
                raise ImatrixError(f"{path}: entry {name} appears twice")
            ncall, nval = take("<ii")
            if nval < 1:
                raise ImatrixError(f"{path}: entry {name} has {nval} values")
            offset = fh.tell()
            if offset + 4 * nval > size:
                raise ImatrixError(f"{path}: truncated data for {name}")
            index[name] = (offset, ncall, nval)
            fh.seek(4 * nval, 1)
        chunk_count, datasets = 0, []
        tail = fh.read(4)
        if len(tail) == 4:
            (chunk_count,) = struct.unpack("<i", tail)
            raw = fh.read(4)
            if len(raw) == 4 and 0 < (n := struct.unpack("<i", raw)[0]) <= size - fh.tell():
                datasets.append(fh.read(n).decode("utf-8", "replace"))

    def load(name: str) -> np.ndarray:
        offset, ncall, nval = index[name]
        v = np.fromfile(path, dtype="<f4", count=nval, offset=offset).astype(np.float32)
        return v / np.float32(ncall) if ncall > 0 else v

    return Imatrix(_Entries({name: nval for name, (_, _, nval) in index.items()}, load), datasets, chunk_count, path)


def _gguf_index(path: Path) -> "tuple[gguf.GGUFReader, dict[str, gguf.ReaderTensor], dict[str, gguf.ReaderTensor]]":
    """The reader and each entry's ``.in_sum2`` and ``.counts`` tensors, checked for shape and metadata."""
    try:
        r = open_gguf(path)
    except GGUFFormatError as e:
        raise ImatrixError(str(e)) from None
    sums: dict[str, gguf.ReaderTensor] = {}
    counts: dict[str, gguf.ReaderTensor] = {}
    for t in r.tensors:
        if t.tensor_type != gguf.GGMLQuantizationType.F32:
            raise ImatrixError(f"{path}: {t.name} must be F32")
        if t.name.endswith(".in_sum2"):
            sums[t.name[: -len(".in_sum2")]] = t
        elif t.name.endswith(".counts"):
            counts[t.name[: -len(".counts")]] = t
    if not sums:
        raise ImatrixError(f"{path}: no data in imatrix file")
    if set(sums) != set(counts):
        raise ImatrixError(f"{path}: mismatched sums and counts for {sorted(set(sums) ^ set(counts))[:4]}")
    for key in ("imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"):
        if key not in r.fields:
            raise ImatrixError(f"{path}: missing imatrix metadata {key}")
    for name, s in sums.items():
        n_mat = int(np.prod(s.shape[1:]))  # ggml order: ne[0] is the row length
        if int(counts[name].n_elements) != n_mat:
            raise ImatrixError(f"{path}: {name}.counts has {int(counts[name].n_elements)} values for {n_mat} matrices")
    return r, sums, counts


def _raw_counts(path: Path, name: str, t: gguf.ReaderTensor) -> np.ndarray:
    raw = np.asarray(t.data, dtype=np.float32).reshape(-1)
    if not (np.isfinite(raw).all() and (raw >= 0).all()):
        raise ImatrixError(f"{path}: {name}.counts holds negative or non-finite values")
    return np.rint(raw).astype(np.int64)


def _load_gguf(path: Path) -> Imatrix:
    r, sums, counts = _gguf_index(path)

    def load(name: str) -> np.ndarray:
        c = _raw_counts(path, name, counts[name])
        per = np.array(sums[name].data, dtype=np.float32).reshape(len(c), -1)
        out = np.ones_like(per)
        hit = c > 0
        out[hit] = per[hit] / c[hit, None].astype(np.float32)
        return out.reshape(-1)

    datasets = list(r.fields["imatrix.datasets"].contents())
    sizes = {name: int(sums[name].n_elements) for name in sorted(sums)}
    return Imatrix(_Entries(sizes, load), datasets, int(r.fields["imatrix.chunk_count"].contents()), path)


# -- coverage: what the calibration text reached ---------------------------------------------------


@dataclass(frozen=True)
class TensorCoverage:
    """What one entry saw. ``tokens[i]``: activation rows that reached matrix i (llama-imatrix's
    ``counts``): for an expert tensor (``ffn_*_exps``, one count per expert) the tokens routed to
    that expert, for any other tensor one count, the tokens it multiplied. None in the legacy format,
    which keeps only ``ncall`` (the chunks of the most-hit matrix)."""

    name: str
    n_mat: int
    tokens: "tuple[int, ...] | None"
    ncall: "int | None" = None

    @property
    def is_experts(self) -> bool:
        return "_exps" in self.name

    @property
    def no_data(self) -> "tuple[int, ...] | None":
        """Matrices (experts) that saw no token: llama-quantize weighs their columns uniformly."""
        return None if self.tokens is None else tuple(i for i, c in enumerate(self.tokens) if c == 0)


@dataclass(frozen=True)
class Coverage:
    """Per tensor and per expert coverage of an importance matrix (:func:`coverage`)."""

    format: str  # "gguf" or "dat"
    chunk_count: int
    chunk_size: "int | None"  # tokens per chunk (GGUF only)
    datasets: tuple[str, ...]
    tensors: tuple[TensorCoverage, ...]

    def experts(self) -> "dict[str, dict]":
        """Per MoE block (``blk.N``): tokens routed to each expert and the experts never routed.

        llama.cpp routes one token to the same experts for gate, up and down, so their counts agree;
        an expert counts as never routed when none of its block's expert tensors saw a token."""
        blocks: dict[str, list[TensorCoverage]] = {}
        for t in self.tensors:
            if t.is_experts and t.tokens is not None:
                blocks.setdefault(t.name.rsplit(".", 2)[0], []).append(t)
        out = {}
        for block, ts in sorted(blocks.items(), key=lambda kv: _block_key(kv[0])):
            n = max(t.n_mat for t in ts)
            tokens = [max((t.tokens[e] for t in ts if e < len(t.tokens)), default=0) for e in range(n)]
            out[block] = {"tokens": tokens, "never_routed": [e for e, c in enumerate(tokens) if c == 0]}
        return out

    def as_dict(self) -> dict:
        """JSON for the registry (ImatrixArtifact.coverage)."""
        experts = self.experts()
        return {
            "format": self.format, "chunk_count": self.chunk_count, "chunk_size": self.chunk_size,
            "datasets": list(self.datasets),
            "tensors": {t.name: {"n_mat": t.n_mat, "tokens": None if t.tokens is None else list(t.tokens),
                                 "no_data": None if t.no_data is None else list(t.no_data), "ncall": t.ncall}
                        for t in self.tensors},
            "experts": experts,
            "experts_never_routed": sum(len(b["never_routed"]) for b in experts.values()),
            "tensors_without_data": sorted(t.name for t in self.tensors if t.tokens is not None and not any(t.tokens)),
        }


def _block_key(block: str) -> "tuple[int, str]":
    tail = block.rsplit(".", 1)[-1]
    return (int(tail), block) if tail.isdigit() else (-1, block)


def coverage(path: "str | Path") -> Coverage:
    """Coverage of an imatrix file in either format, read from its counts (the values are not read).

    GGUF keeps one count per matrix: per expert for MoE expert tensors (llama-imatrix's
    ``collect_imatrix``, MUL_MAT_ID branch), one for every other tensor; entries no token reached
    are written too. The legacy ``.dat`` format keeps one ``ncall`` per entry and leaves out
    entries without any data, so it cannot say which experts were never routed."""
    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == b"GGUF":
        r, sums, counts = _gguf_index(path)
        tensors = []
        for name in sorted(sums):
            c = _raw_counts(path, name, counts[name])
            tensors.append(TensorCoverage(name, len(c), tuple(int(x) for x in c)))
        return Coverage("gguf", int(r.fields["imatrix.chunk_count"].contents()),
                        int(r.fields["imatrix.chunk_size"].contents()),
                        tuple(r.fields["imatrix.datasets"].contents()), tuple(tensors))
    im = _load_legacy(path)
    ncalls = _legacy_ncalls(path)
    tensors = tuple(TensorCoverage(name, 1, None, ncalls[name]) for name in sorted(im.data))
    return Coverage("dat", im.chunk_count, None, tuple(im.datasets), tensors)


def _legacy_ncalls(path: Path) -> "dict[str, int]":
    """name -> ncall of a legacy file (already checked by _load_legacy)."""
    out = {}
    with open(path, "rb") as fh:
        (n_entries,) = struct.unpack("<i", fh.read(4))
        for _ in range(n_entries):
            (n,) = struct.unpack("<i", fh.read(4))
            name = fh.read(n).decode("utf-8")
            ncall, nval = struct.unpack("<ii", fh.read(8))
            out[name] = ncall
            fh.seek(4 * nval, 1)
    return out


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
