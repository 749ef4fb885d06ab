"""Model inputs, read one tensor (or a slab of its rows) at a time.

Two kinds of source:

* a Hugging Face directory: ``config.json``, ``*.safetensors`` (with or without
  ``model.safetensors.index.json``), tokenizer files. Tensors are BF16, F16, F32, or
  DeepSeek's FP8 (``float8_e4m3fn`` with a ``weight_scale_inv`` per 128x128 tile);
* a GGUF file (or the first file of a split set) of F32/F16/BF16 tensors, re-quantized the
  way llama-quantize does.

Memory: safetensors files are read with plain ``seek``/``readinto`` of the bytes of the rows
asked for, never mapped, so nothing but the requested slab is ever resident.
"""
from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import gguf
import numpy as np
import torch

from quant.gguf_file import GGUFFormatError, open_gguf

SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "F8_E8M0": torch.float8_e8m0fnu,  # DeepSeek-V4's power-of-two scales (FP8 tiles, MXFP4 groups)
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}

FP8_BLOCK = (128, 128)


class SourceError(ValueError):
    """The input is not something we can convert; the message says why."""


@dataclass(frozen=True)
class SourceTensor:
    name: str
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype name, or GGML type name for GGUF sources
    file: Path
    offset: int  # absolute byte offset of the data in the file
    nbytes: int

    @property
    def row_bytes(self) -> int:
        rows = self.shape[0] if self.shape else 1
        return self.nbytes // max(rows, 1)


def _read_exact(path: Path, offset: int, nbytes: int) -> bytearray:
    buf = bytearray(nbytes)
    with open(path, "rb") as fh:
        fh.seek(offset)
        view = memoryview(buf)
        got = 0
        while got < nbytes:
            n = fh.readinto(view[got:])
            if not n:
                raise SourceError(f"{path}: file ends early (wanted {nbytes} bytes at {offset})")
            got += n
    return buf


def read_safetensors_header(path: Path) -> tuple[dict, int]:
    """The JSON header of a .safetensors file and the offset where its data starts.

    Every entry is checked here, once, against the file (see :func:`_check_entries`), so a
    truncated, corrupt or lying file is refused before a single tensor is read or written."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise SourceError(f"{path}: not a safetensors file ({size} bytes)")
        (n,) = struct.unpack("<Q", raw)
        if n > 100 * 1024 * 1024:
            raise SourceError(f"{path}: implausible safetensors header size {n}")
        if 8 + n > size:
            raise SourceError(f"{path}: header of {n} bytes is longer than the file ({size} bytes): truncated?")
        try:
            header = json.loads(fh.read(n))
        except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise SourceError(f"{path}: safetensors header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise SourceError(f"{path}: safetensors header is not a JSON object")
    _check_entries(path, header, size - 8 - n)
    return header, 8 + n


def _check_entries(path: Path, header: dict, data_size: int) -> None:
    """The safetensors rules, all in one place: a known dtype; a shape of ints >= 1 (a
    zero-sized weight is no weight); data_offsets [begin, end] inside the data area with
    end - begin = prod(shape) * itemsize; no two tensors sharing bytes."""
    ranges = []
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(meta, dict) or not {"dtype", "shape", "data_offsets"} <= meta.keys():
            raise SourceError(f"{path}: tensor {name!r} lacks dtype, shape or data_offsets")
        dtype, shape, offsets = meta["dtype"], meta["shape"], meta["data_offsets"]
        if dtype not in SAFETENSORS_DTYPES:
            raise SourceError(f"{path}: tensor {name!r} has unsupported dtype {dtype!r}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 1 for d in shape):
            raise SourceError(f"{path}: tensor {name!r} has shape {shape!r}; dims must be integers >= 1")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int and o >= 0 for o in offsets)):
            raise SourceError(f"{path}: tensor {name!r} has data_offsets {offsets!r}, expected [begin, end]")
        begin, end = offsets
        if end < begin or end > data_size:
            raise SourceError(f"{path}: tensor {name!r} has data_offsets [{begin}, {end}] outside the {data_size} data bytes")
        expected = math.prod(shape) * SAFETENSORS_DTYPES[dtype].itemsize
        if end - begin != expected:
            raise SourceError(f"{path}: tensor {name!r} has {end - begin} bytes, its shape {shape} of {dtype} needs {expected}")
        ranges.append((begin, end, name))
    ranges.sort()
    for (_, end_a, a), (begin_b, _, b) in zip(ranges, ranges[1:]):
        if begin_b < end_a:
            raise SourceError(f"{path}: tensors {a!r} and {b!r} overlap")


class Config(dict):
    """config.json: a missing key is a SourceError naming it (not a bare KeyError deep in an adapter)."""

    def __init__(self, data: dict, path: Path):
        super().__init__(data)
        self.path = path

    def __missing__(self, key: str):
        raise SourceError(f"{self.path}: no {key!r} in config.json")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (ValueError, RecursionError) as e:
        raise SourceError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise SourceError(f"{path}: expected a JSON object")
    return data


class HFSource:
    """A Hugging Face checkpoint directory."""

    kind = "hf"

    def __init__(self, path: "str | Path"):
        self.path = Path(path)
        cfg = self.path / "config.json"
        if not cfg.is_file():
            raise SourceError(f"{self.path}: no config.json")
        self.config: dict = Config(_read_json(cfg), cfg)
        files = self._weight_files()
        self.tensors: dict[str, SourceTensor] = {}
        for f in files:
            header, data_start = read_safetensors_header(f)
            for name, meta in header.items():
                if name == "__metadata__":
                    continue
                if name in self.tensors:
                    raise SourceError(f"tensor {name} appears in both {self.tensors[name].file.name} and {f.name}")
                start, end = meta["data_offsets"]
                if meta["dtype"] not in SAFETENSORS_DTYPES:
                    raise SourceError(f"{f.name}: {name} has unsupported dtype {meta['dtype']}")
                self.tensors[name] = SourceTensor(
                    name, tuple(meta["shape"]), meta["dtype"], f, data_start + start, end - start
                )
        qc = self.config.get("quantization_config") or {}
        self.fp8_block = tuple(qc.get("weight_block_size") or FP8_BLOCK)
        self._check_fp8()

    def scale_name(self, name: str) -> "str | None":
        """The scale tensor stored with a weight: ``<name>_scale_inv`` (DeepSeek-V3) or, for
        ``X.weight``, ``X.scale`` (DeepSeek-V4's E8M0 scales, of FP8 tiles and MXFP4 groups)."""
        if name + "_scale_inv" in self.tensors:
            return name + "_scale_inv"
        if name.endswith(".weight") and (s := name.removesuffix(".weight") + ".scale") in self.tensors:
            return s
        return None

    def _check_fp8(self) -> None:
        """Every FP8 weight is 2-D and has its scale (``weight_scale_inv`` or V4's ``.scale``) of one
        float per block[0] x block[1] tile: checked up front, so a missing or misshapen scale stops the
        plan instead of a conversion half-way through."""
        br, bc = self.fp8_block
        for name, t in self.tensors.items():
            if t.dtype not in ("F8_E4M3", "F8_E5M2"):
                continue
            where = f"{t.file.name}: {name}"
            if len(t.shape) != 2:
                raise SourceError(f"{where}: FP8 weights must be 2-D, got {t.shape}")
            scale_name = self.scale_name(name)
            if scale_name is None:
                raise SourceError(f"{where} is FP8 but has no {name}_scale_inv")
            scale = self.tensors[scale_name]
            want = (-(-t.shape[0] // br), -(-t.shape[1] // bc))
            if scale.shape != want or scale.dtype not in ("F32", "BF16", "F16", "F8_E8M0"):
                raise SourceError(
                    f"{t.file.name}: {scale_name} is {scale.dtype} {list(scale.shape)}, expected a float [{want[0]}, {want[1]}] "
                    f"(one scale per {br}x{bc} tile of {list(t.shape)})"
                )

    def _weight_files(self) -> list[Path]:
        index = self.path / "model.safetensors.index.json"
        if index.is_file():
            weight_map = _read_json(index).get("weight_map")
            if not isinstance(weight_map, dict) or not all(isinstance(n, str) for n in weight_map.values()):
                raise SourceError(f"{index}: no weight_map of tensor name -> file name")
            names = sorted(set(weight_map.values()))
            # plain names only: "../other-model/x.safetensors" must not pull in files from elsewhere
            bad = [n for n in names if n in ("", ".", "..") or Path(n).name != n or "\\" in n or "\0" in n]
            if bad:
                raise SourceError(f"{index}: weight files must be plain file names in the model directory, got {bad[:4]}")
            files = [self.path / n for n in names]
        else:
            files = sorted(self.path.glob("*.safetensors"))
        if not files:
            raise SourceError(f"{self.path}: no .safetensors files")
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise SourceError(f"{self.path}: missing weight files {missing}")
        return files

    # -- reading -------------------------------------------------------------------------
    def names(self) -> list[str]:
        return list(self.tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape

    def is_scale(self, name: str) -> bool:
        """Scale tensors of FP8 (and V4's MXFP4) weights are consumed with their weight, never converted alone."""
        if name.endswith("_scale_inv"):
            return name[: -len("_scale_inv")] in self.tensors
        return name.endswith(".scale") and name.removesuffix(".scale") + ".weight" in self.tensors

    def raw(self, name: str, rows: "tuple[int, int] | None" = None) -> torch.Tensor:
        """The stored tensor (or rows [r0, r1) of it) in its own dtype, on the CPU."""
        t = self.tensors[name]
        dtype = SAFETENSORS_DTYPES[t.dtype]
        if rows is None or not t.shape:
            r0, r1 = 0, (t.shape[0] if t.shape else 1)
        else:
            r0, r1 = rows
        rb = t.row_bytes if t.shape else t.nbytes
        buf = _read_exact(t.file, t.offset + r0 * rb, (r1 - r0) * rb)
        out = torch.frombuffer(buf, dtype=torch.uint8) if buf else torch.empty(0, dtype=torch.uint8)
        shape = ((r1 - r0),) + t.shape[1:] if t.shape else ()
        return out.view(dtype).reshape(shape)

    def read(self, name: str, rows: "tuple[int, int] | None" = None) -> torch.Tensor:
        """Rows [r0, r1) of a tensor as float32; FP8 weights are dequantized as DeepSeek's
        own FP8->BF16 cast does (float32 weight times its tile's scale, rounded to bf16)."""
        t = self.tensors[name]
        if t.dtype in ("F8_E4M3", "F8_E5M2"):
            scale_name = self.scale_name(name)
            if scale_name is None:
                raise SourceError(f"{name} is FP8 but has no {name}_scale_inv")
            return fp8_dequant_rows(self, name, scale_name, rows, self.fp8_block)
        x = self.raw(name, rows)
        return x.to(torch.float32)


def fp8_dequant(weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int] = FP8_BLOCK) -> torch.Tensor:
    """DeepSeek-V3's fp8_cast_bf16 for one weight: weight.float() * the scale of its
    block[0] x block[1] tile (edge tiles cropped), rounded to bf16, returned as float32."""
    rows, cols = weight.shape
    br, bc = block
    s = scale_inv.to(torch.float32)
    s = s.repeat_interleave(br, dim=0)[:rows].repeat_interleave(bc, dim=1)[:, :cols]
    return (weight.to(torch.float32) * s).to(torch.bfloat16).to(torch.float32)


def fp8_dequant_rows(src: HFSource, name: str, scale_name: str, rows, block) -> torch.Tensor:
    t = src.tensors[name]
    if len(t.shape) != 2:
        raise SourceError(f"{name}: FP8 weights must be 2-D, got {t.shape}")
    n_rows = t.shape[0]
    r0, r1 = rows if rows is not None else (0, n_rows)
    br = block[0]
    # read whole tiles of rows, then crop: tile boundaries decide which scale a row uses
    t0, t1 = r0 // br, (r1 + br - 1) // br
    w = src.raw(name, (t0 * br, min(t1 * br, n_rows)))
    s = src.raw(scale_name, (t0, t1))
    full = fp8_dequant(w, s, block)
    return full[r0 - t0 * br : r1 - t0 * br]


class GGUFSource:
    """A GGUF file (or the first of a split set) of float tensors, for re-quantization."""

    kind = "gguf"

    def __init__(self, path: "str | Path", allow_requantize: bool = False):
        self.path = Path(path)
        self.files = self._split_files(self.path)
        self.readers = [_open_gguf(f) for f in self.files]
        self.allow_requantize = allow_requantize
        self.reader = self.readers[0]
        self.tensors: dict[str, SourceTensor] = {}
        self._gguf_tensors: dict[str, gguf.ReaderTensor] = {}
        for f, r in zip(self.files, self.readers):
            for t in r.tensors:
                if t.name in self.tensors:
                    raise SourceError(f"tensor {t.name!r} appears in both {self.tensors[t.name].file.name} and {f.name}")
                shape = tuple(int(d) for d in reversed(t.shape.tolist()))
                self.tensors[t.name] = SourceTensor(t.name, shape, t.tensor_type.name, f, int(t.data_offset), int(t.n_bytes))
                self._gguf_tensors[t.name] = t
        field = self.reader.fields.get("general.architecture")
        if field is None or field.types != [gguf.GGUFValueType.STRING]:
            raise SourceError(f"{self.path}: no general.architecture string")
        self.arch = field.contents()
        self.config: dict = {}
        for name, t in self.tensors.items():
            if t.dtype not in ("F32", "F16", "BF16") and not allow_requantize:
                raise SourceError(
                    f"{self.path.name}: {name} is {t.dtype}; only F32/F16/BF16 GGUF inputs are re-quantized "
                    "(allow_requantize=True to dequantize quantized tensors first, as llama-quantize --allow-requantize does)"
                )

    @staticmethod
    def _split_files(path: Path) -> list[Path]:
        m = re.fullmatch(r"(.*)-(\d{5})-of-(\d{5})\.gguf", path.name)
        if not m:
            return [path]
        count = int(m.group(3))
        return [path.with_name(f"{m.group(1)}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]

    def field(self, key: str, default=None):
        f = self.reader.fields.get(key)
        return default if f is None else f.contents()

    def names(self) -> list[str]:
        return list(self.tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape

    def is_scale(self, name: str) -> bool:
        return False

    def read(self, name: str, rows: "tuple[int, int] | None" = None) -> torch.Tensor:
        t = self.tensors[name]
        n_rows = int(np.prod(t.shape[:-1])) if len(t.shape) > 1 else 1
        n_per_row = t.shape[-1]
        r0, r1 = rows if rows is not None else (0, n_rows)
        rb = t.nbytes // n_rows
        buf = _read_exact(t.file, t.offset + r0 * rb, (r1 - r0) * rb)
        data = torch.frombuffer(buf, dtype=torch.uint8).reshape(r1 - r0, rb)
        if t.dtype == "F32":
            x = data.view(torch.float32)
        elif t.dtype == "F16":
            x = data.view(torch.float16).float()
        elif t.dtype == "BF16":
            x = data.view(torch.bfloat16).float()
        else:
            import kernels

            x = kernels.dequantize(data, t.dtype, n_per_row)
        x = x.reshape(r1 - r0, n_per_row)
        return x if len(t.shape) > 1 else x.reshape(-1)

    def raw_bytes(self, name: str, rows: "tuple[int, int] | None" = None) -> bytes:
        t = self.tensors[name]
        n_rows = int(np.prod(t.shape[:-1])) if len(t.shape) > 1 else 1
        r0, r1 = rows if rows is not None else (0, n_rows)
        rb = t.nbytes // n_rows
        return bytes(_read_exact(t.file, t.offset + r0 * rb, (r1 - r0) * rb))


def _open_gguf(path: Path) -> gguf.GGUFReader:
    """A checked GGUF reader (quant.gguf_file.open_gguf); a malformed file is a SourceError."""
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    try:
        return open_gguf(path)
    except GGUFFormatError as e:
        raise SourceError(str(e)) from None


def open_source(path: "str | Path", allow_requantize: bool = False) -> "HFSource | GGUFSource":
    p = Path(path)
    if p.is_dir():
        return HFSource(p)
    if p.is_file() and p.suffix == ".gguf":
        return GGUFSource(p, allow_requantize=allow_requantize)
    raise SourceError(f"{p}: expected a Hugging Face model directory or a .gguf file")


def iter_rows(n_rows: int, step: int) -> Iterator[tuple[int, int]]:
    for r0 in range(0, n_rows, step):
        yield r0, min(n_rows, r0 + step)
