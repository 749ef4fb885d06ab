"""A streaming GGUF writer: plan first, then header, then tensor bytes in plan order.

The writer is a small state machine (NEW -> HEADER -> TENSOR/BETWEEN -> CLOSED): every
tensor's name, shape, type and byte size is declared up front, the header (key/values and
tensor infos with their offsets) goes out first, then each tensor's bytes arrive in the
declared order, in as many pieces as the caller likes; the writer checks each tensor's byte
count, pads to the alignment, and hashes everything it writes.

Split output follows llama.cpp's gguf-split: every shard carries ``split.no``,
``split.count`` and ``split.tensors.count``; only the first carries the model's key/values;
shards are named ``NAME-00001-of-0000N.gguf``.
"""
from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Sequence

import gguf
from gguf import GGUFValueType

ALIGNMENT = gguf.GGUF_DEFAULT_ALIGNMENT
MAX_SHARDS = 64

_SCALAR_FORMATS = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}


@dataclass(frozen=True)
class KV:
    """One metadata key/value with its GGUF type (sub_type: the element type of an array)."""

    key: str
    type: GGUFValueType
    value: Any
    sub_type: "GGUFValueType | None" = None


@dataclass(frozen=True)
class TensorInfo:
    """A planned tensor: shape in PyTorch order (the last dim is ggml's ne[0])."""

    name: str
    shape: tuple[int, ...]
    type: str  # GGML type name
    nbytes: int

    @property
    def ggml_type(self) -> gguf.GGMLQuantizationType:
        return gguf.GGMLQuantizationType[self.type]


def padded(n: int, align: int = ALIGNMENT) -> int:
    return (n + align - 1) // align * align


def _pack_string(s: "str | bytes") -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def _pack_value(vtype: GGUFValueType, value: Any, sub_type: "GGUFValueType | None") -> bytes:
    if vtype == GGUFValueType.STRING:
        return _pack_string(value)
    if vtype == GGUFValueType.ARRAY:
        items = list(value)
        if sub_type is None:  # gguf.GGUFWriter infers it from the first element too
            sub_type = GGUFValueType.get_type(items[0]) if items else GGUFValueType.UINT8
        head = struct.pack("<IQ", int(sub_type), len(items))
        if sub_type == GGUFValueType.STRING:
            return head + b"".join(_pack_string(s) for s in items)
        if sub_type == GGUFValueType.ARRAY:
            raise ValueError("nested arrays are not supported")
        fmt = _SCALAR_FORMATS[sub_type]
        return head + struct.pack("<" + fmt[1] * len(items), *items)
    return struct.pack(_SCALAR_FORMATS[vtype], value)


def pack_kv(kv: KV) -> bytes:
    return _pack_string(kv.key) + struct.pack("<I", int(kv.type)) + _pack_value(kv.type, kv.value, kv.sub_type)


def pack_tensor_info(info: TensorInfo, offset: int) -> bytes:
    dims = tuple(reversed(info.shape))  # ggml order: ne[0] first
    return (
        _pack_string(info.name)
        + struct.pack("<I", len(dims))
        + struct.pack("<" + "Q" * len(dims), *dims)
        + struct.pack("<IQ", int(info.ggml_type), offset)
    )


def kvs_from_writer(writer: gguf.GGUFWriter) -> list[KV]:
    """The key/values collected by a gguf.GGUFWriter used only as a typed-key builder."""
    out = []
    for key, v in writer.kv_data[0].items():
        out.append(KV(key, v.type, v.value, v.sub_type))
    return out


class WriterState(enum.Enum):
    NEW = "new"
    HEADER = "header written"
    TENSOR = "inside a tensor"
    CLOSED = "closed"


class WriterError(RuntimeError):
    pass


class GGUFFileWriter:
    """Writes one GGUF file: ``write_header()``, then for each planned tensor in order
    ``begin_tensor(name)``, ``write(bytes)`` as many times as needed, ``end_tensor()``;
    then ``close()`` returns (size, sha256)."""

    def __init__(self, path: Path, kvs: Sequence[KV], tensors: Sequence[TensorInfo], alignment: int = ALIGNMENT):
        self.path = Path(path)
        self.kvs = list(kvs)
        self.tensors = list(tensors)
        self.alignment = alignment
        self.state = WriterState.NEW
        self._fh: "BinaryIO | None" = None
        self._hash = hashlib.sha256()
        self._size = 0
        self._next = 0  # index of the next tensor to write
        self._written = 0  # bytes of the current tensor so far
        names = [t.name for t in self.tensors]
        if len(set(names)) != len(names):
            raise WriterError("duplicate tensor names in the plan")

    # -- low level -------------------------------------------------------------------------
    def _emit(self, data: "bytes | memoryview") -> None:
        assert self._fh is not None
        self._fh.write(data)
        self._hash.update(data)
        self._size += len(data)

    def _expect(self, *states: WriterState) -> None:
        if self.state not in states:
            raise WriterError(f"{self.path.name}: writer is {self.state.value}, expected {' or '.join(s.value for s in states)}")

    # -- states ----------------------------------------------------------------------------
    def write_header(self) -> None:
        self._expect(WriterState.NEW)
        self._fh = open(self.path, "wb")
        parts = [struct.pack("<IIQQ", gguf.GGUF_MAGIC, gguf.GGUF_VERSION, len(self.tensors), len(self.kvs))]
        parts.extend(pack_kv(kv) for kv in self.kvs)
        offset = 0
        for info in self.tensors:
            parts.append(pack_tensor_info(info, offset))
            offset += padded(info.nbytes, self.alignment)
        header = b"".join(parts)
        self._emit(header)
        self._emit(b"\0" * (padded(len(header), self.alignment) - len(header)))
        self.state = WriterState.HEADER

    def begin_tensor(self, name: str) -> TensorInfo:
        self._expect(WriterState.HEADER)
        if self._next >= len(self.tensors):
            raise WriterError(f"{self.path.name}: all {len(self.tensors)} planned tensors are already written")
        info = self.tensors[self._next]
        if info.name != name:
            raise WriterError(f"{self.path.name}: tensor {name!r} out of order, the plan has {info.name!r} next")
        self._written = 0
        self.state = WriterState.TENSOR
        return info

    def write(self, data: "bytes | memoryview") -> None:
        self._expect(WriterState.TENSOR)
        info = self.tensors[self._next]
        if self._written + len(data) > info.nbytes:
            raise WriterError(f"{info.name}: more than the planned {info.nbytes} bytes")
        self._emit(data)
        self._written += len(data)

    def end_tensor(self) -> None:
        self._expect(WriterState.TENSOR)
        info = self.tensors[self._next]
        if self._written != info.nbytes:
            raise WriterError(f"{info.name}: wrote {self._written} bytes, the plan has {info.nbytes}")
        self._emit(b"\0" * (padded(info.nbytes, self.alignment) - info.nbytes))
        self._next += 1
        self.state = WriterState.HEADER

    def close(self) -> tuple[int, str]:
        self._expect(WriterState.HEADER)
        if self._next != len(self.tensors):
            raise WriterError(f"{self.path.name}: closed after {self._next} of {len(self.tensors)} tensors")
        assert self._fh is not None
        self._fh.flush()
        self._fh.close()
        self._fh = None
        self.state = WriterState.CLOSED
        return self._size, self._hash.hexdigest()

    def abort(self) -> None:
        """Close the handle without checks (the caller deletes the file)."""
        if self._fh is not None:
            try:
                self._fh.close()
            finally:
                self._fh = None
        self.state = WriterState.CLOSED


# -- splits ------------------------------------------------------------------------------------


def plan_shards(tensors: Sequence[TensorInfo], max_bytes: "int | None", alignment: int = ALIGNMENT) -> list[list[TensorInfo]]:
    """Greedy split by tensor bytes, as gguf-split --split-max-size does: a new shard starts
    when the next tensor would take the current one over max_bytes (a tensor larger than
    max_bytes gets a shard of its own). None or 0: one file."""
    if not max_bytes:
        return [list(tensors)]
    shards: list[list[TensorInfo]] = [[]]
    size = 0
    for info in tensors:
        n = padded(info.nbytes, alignment)
        if shards[-1] and size + n > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(info)
        size += n
    if len(shards) > MAX_SHARDS:
        raise ValueError(
            f"a shard size of {max_bytes} bytes needs {len(shards)} files; at most {MAX_SHARDS} are allowed, "
            f"use a shard size of at least {(sum(padded(t.nbytes) for t in tensors) + MAX_SHARDS - 1) // MAX_SHARDS} bytes"
        )
    return shards


def split_kvs(index: int, count: int, n_tensors: int) -> list[KV]:
    keys = gguf.Keys.Split
    return [
        KV(keys.LLM_KV_SPLIT_NO, GGUFValueType.UINT16, index),
        KV(keys.LLM_KV_SPLIT_COUNT, GGUFValueType.UINT16, count),
        KV(keys.LLM_KV_SPLIT_TENSORS_COUNT, GGUFValueType.INT32, n_tensors),
    ]


def shard_name(stem: str, index: int, count: int) -> str:
    """llama.cpp's llama_split_path: ``stem-00001-of-00003.gguf``; ``stem.gguf`` when unsplit."""
    if count == 1:
        return f"{stem}.gguf"
    return f"{stem}-{index + 1:05d}-of-{count:05d}.gguf"


# -- reading back ------------------------------------------------------------------------------


def reader_kvs(reader: gguf.GGUFReader, skip: Iterable[str] = ()) -> list[KV]:
    """A GGUF file's key/values with their exact types (the GGUF.* pseudo-fields left out)."""
    skip = set(skip)
    out = []
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in skip:
            continue
        vtype = field.types[0]
        if vtype == GGUFValueType.ARRAY:
            sub = field.types[-1] if len(field.types) > 1 else GGUFValueType.UINT8
            if sub == GGUFValueType.STRING:
                value = [bytes(field.parts[i]) for i in field.data]
            else:
                value = [field.parts[i].tolist()[0] for i in field.data]
            out.append(KV(key, vtype, value, sub))
        elif vtype == GGUFValueType.STRING:
            out.append(KV(key, vtype, bytes(field.parts[field.data[0]])))
        else:
            out.append(KV(key, vtype, field.parts[field.data[0]].tolist()[0]))
    return out
