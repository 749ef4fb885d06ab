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
import math
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Sequence

import gguf
from gguf import GGUFValueType

ALIGNMENT = gguf.GGUF_DEFAULT_ALIGNMENT
MAX_SHARDS = 64
GGML_MAX_DIMS = 4
GGML_MAX_NAME = 64  # llama.cpp refuses tensor names of this many bytes or more

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
    """A planned tensor: its type and bytes as quant.planner.plan_tensor decided them; shape in
    PyTorch order (the last dim is ggml's ne[0])."""

    name: str
    shape: tuple[int, ...]
    type: str  # GGML type name
    nbytes: int

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def ggml_type(self) -> gguf.GGMLQuantizationType:
        return gguf.GGMLQuantizationType[self.type]


def padded(n: int, align: int = ALIGNMENT) -> int:
    """n rounded up to the alignment: GGUF pads its header and every tensor's data to it."""
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
    def _header(self) -> bytes:
        """The header: key/values and tensor infos with their offsets, padded to the alignment."""
        parts = [struct.pack("<IIQQ", gguf.GGUF_MAGIC, gguf.GGUF_VERSION, len(self.tensors), len(self.kvs))]
        parts.extend(pack_kv(kv) for kv in self.kvs)
        offset = 0
        for info in self.tensors:
            parts.append(pack_tensor_info(info, offset))
            offset += padded(info.nbytes, self.alignment)
        header = b"".join(parts)
        return header + b"\0" * (padded(len(header), self.alignment) - len(header))

    def write_header(self) -> None:
        self._expect(WriterState.NEW)
        self._fh = open(self.path, "wb")
        self._emit(self._header())
        self.state = WriterState.HEADER

    def resume(self, done: int) -> int:
        """Go on from a file whose header and first `done` tensors an earlier writer of the same
        plan wrote: check the header, drop what follows those tensors, hash the kept bytes
        (read once: the file's sha256 still covers every byte) and continue after them.
        Returns the kept tensor bytes. Raises WriterError when the file does not hold them."""
        self._expect(WriterState.NEW)
        header = self._header()
        end = len(header) + sum(padded(t.nbytes, self.alignment) for t in self.tensors[:done])
        fh = open(self.path, "r+b")
        try:
            if fh.read(len(header)) != header or os.fstat(fh.fileno()).st_size < end:
                raise WriterError(f"{self.path.name}: not the planned header, or shorter than its {done} finished tensors")
            fh.truncate(end)
            fh.seek(0)
            left = end
            while left:
                chunk = fh.read(min(left, 1 << 24))
                self._hash.update(chunk)
                left -= len(chunk)
            fh.seek(end)
        except BaseException:
            fh.close()
            raise
        self._fh, self._size, self._next = fh, end, done
        self.state = WriterState.HEADER
        return end - len(header)

    def flush(self) -> None:
        """Hand what was written to the OS (a killed process then loses none of it)."""
        if self._fh is not None:
            self._fh.flush()

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


# -- checking untrusted files ---------------------------------------------------------------------


class GGUFFormatError(ValueError):
    """A GGUF file that is not well-formed; the message names the file and the key or tensor."""


_SCALAR_SIZES = {vtype: struct.calcsize(fmt) for vtype, fmt in _SCALAR_FORMATS.items()}
_VALUE_TYPES = {int(t): t for t in GGUFValueType}
_INT64_MAX = (1 << 63) - 1


class _Cursor:
    """Reads little-endian fields from a mapped file; every read is checked against its end."""

    def __init__(self, buf: "mmap.mmap | bytes", path: Path):
        self.buf, self.path, self.pos, self.size = buf, path, 0, len(buf)

    def fail(self, what: str) -> GGUFFormatError:
        return GGUFFormatError(f"{self.path}: {what}")

    def left(self) -> int:
        return self.size - self.pos

    def skip(self, n: int, what: str) -> None:
        if n > self.left():
            raise self.fail(f"{what} needs {n} bytes at offset {self.pos}, the file has {self.left()} left")
        self.pos += n

    def take(self, fmt: str, what: str) -> tuple:
        n = struct.calcsize(fmt)
        start = self.pos
        self.skip(n, what)
        return struct.unpack_from(fmt, self.buf, start)

    def u32(self, what: str) -> int:
        return self.take("<I", what)[0]

    def u64(self, what: str) -> int:
        return self.take("<Q", what)[0]

    def name(self, what: str) -> str:
        """A key or tensor name: UTF-8 without control characters (they could reach file names)."""
        n = self.u64(f"length of {what}")
        start = self.pos
        self.skip(n, what)
        try:
            text = bytes(self.buf[start : start + n]).decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} at offset {start} is not UTF-8") from None
        if not text or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            raise self.fail(f"{what} {text!r} is empty or holds control characters")
        return text

    def text(self, what: str) -> None:
        """Step over a string value, which must be UTF-8: gguf's ``contents()`` and llama.cpp's
        vocabulary decode them later, far from here."""
        n = self.u64(f"length of {what}")
        start = self.pos
        self.skip(n, what)
        try:
            self.buf[start : start + n].decode("utf-8")  # a slice of an mmap is bytes
        except UnicodeDecodeError:
            raise self.fail(f"{what} at offset {start} is not UTF-8") from None

    def skip_value(self, vtype: int, what: str) -> "int | None":
        """Step over one value; returns it when it is an unsigned integer (for general.alignment)."""
        if vtype not in _VALUE_TYPES:
            raise self.fail(f"{what} has unknown value type {vtype}")
        t = _VALUE_TYPES[vtype]
        if t == GGUFValueType.STRING:
            self.text(what)
            return None
        if t == GGUFValueType.ARRAY:
            sub, count = self.take("<IQ", f"array header of {what}")
            if sub not in _VALUE_TYPES or _VALUE_TYPES[sub] == GGUFValueType.ARRAY:
                raise self.fail(f"{what} is an array of unknown or nested type {sub}")
            item = 8 if _VALUE_TYPES[sub] == GGUFValueType.STRING else _SCALAR_SIZES[_VALUE_TYPES[sub]]
            if count * item > self.left():  # each element takes at least `item` bytes
                raise self.fail(f"{what} claims {count} elements, more than the {self.left()} bytes left")
            if _VALUE_TYPES[sub] == GGUFValueType.STRING:
                for i in range(count):
                    self.text(f"{what}[{i}]")
            else:
                self.skip(count * item, what)
            return None
        (value,) = self.take(_SCALAR_FORMATS[t], what)
        return value if t == GGUFValueType.UINT32 else None


@dataclass(frozen=True)
class GGUFLayout:
    """What the checked header says: where tensor data starts, and each tensor's byte range."""

    version: int
    n_kv: int
    alignment: int
    data_start: int
    tensors: dict[str, tuple[int, int]]  # name -> (absolute offset, nbytes)


def check_gguf(path: "str | Path") -> GGUFLayout:
    """Walk a GGUF header checking every count, length, type and offset against the file.

    gguf.GGUFReader trusts the header: a tensor count of 2**62 or a string array claiming
    more elements than the file holds makes it loop or allocate for ever, an unknown type
    raises whatever numpy raises. This pass reads only the header (through mmap, so nothing
    is allocated but Python ints) and rejects, with a GGUFFormatError naming the file and
    the key or tensor, anything llama.cpp's gguf loader would refuse: bad magic or version,
    counts larger than the bytes left, unknown value or tensor types, nested arrays, bad
    alignment, strings that are not UTF-8, names holding control characters, more than 4 dims or
    dims < 1 or an element count over int64, a row length the type's block does not divide,
    misaligned tensor offsets, tensor data outside the file or overlapping another's."""
    path = Path(path)
    size = path.stat().st_size
    if size < 24:
        raise GGUFFormatError(f"{path}: {size} bytes is too short for a GGUF header")
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        return _walk_header(_Cursor(buf, path))


def _walk_header(cur: _Cursor) -> GGUFLayout:
    magic, version = cur.take("<II", "magic and version")
    if magic != gguf.GGUF_MAGIC:
        raise cur.fail(f"bad magic {magic:#010x}, not a GGUF file")
    if version not in (2, 3):
        if struct.unpack("<I", struct.pack(">I", version))[0] in (2, 3):
            raise cur.fail("big-endian GGUF files are not supported")
        raise cur.fail(f"unsupported GGUF version {version}")
    n_tensors, n_kv = cur.take("<QQ", "tensor and key/value counts")
    # the smallest key/value is 13 bytes (length, 1-byte key, type, 1-byte value), the
    # smallest tensor info 33 (length, 1-byte name, n_dims, one dim, type, offset)
    if n_kv * 13 > cur.left() or n_tensors * 33 > cur.left():
        raise cur.fail(f"header claims {n_tensors} tensors and {n_kv} key/values, more than {cur.left()} bytes can hold")
    alignment = ALIGNMENT
    keys: set[str] = set()
    for i in range(n_kv):
        key = cur.name(f"key {i}")
        if key in keys:
            raise cur.fail(f"duplicate key {key!r}")
        keys.add(key)
        vtype = cur.u32(f"type of {key!r}")
        value = cur.skip_value(vtype, f"value of {key!r}")
        if key == gguf.Keys.General.ALIGNMENT:
            if value is None or value == 0 or value & (value - 1):
                raise cur.fail(f"{key} must be a UINT32 power of two")
            alignment = value
    infos: list[tuple[str, int, int]] = []
    names: set[str] = set()
    for i in range(n_tensors):
        name = cur.name(f"name of tensor {i}")
        if len(name.encode()) >= GGML_MAX_NAME:
            raise cur.fail(f"tensor name {name!r} is {len(name.encode())} bytes, at most {GGML_MAX_NAME - 1} are allowed")
        if name in names:
            raise cur.fail(f"duplicate tensor {name!r}")
        names.add(name)
        n_dims = cur.u32(f"n_dims of {name!r}")
        if not 1 <= n_dims <= GGML_MAX_DIMS:
            raise cur.fail(f"tensor {name!r} has {n_dims} dims, expected 1 to {GGML_MAX_DIMS}")
        dims = cur.take(f"<{n_dims}Q", f"dims of {name!r}")
        n_elements = 1
        for d in dims:
            n_elements *= d
        if min(dims) < 1 or n_elements > _INT64_MAX:
            raise cur.fail(f"tensor {name!r} has dims {list(dims)}: each must be at least 1, their product at most 2**63-1")
        ttype, offset = cur.take("<IQ", f"type and offset of {name!r}")
        try:
            block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ttype)]
        except (ValueError, KeyError):
            raise cur.fail(f"tensor {name!r} has unknown type {ttype}") from None
        if dims[0] % block:
            raise cur.fail(f"tensor {name!r}: row length {dims[0]} is not a multiple of the type's block of {block}")
        infos.append((name, offset, n_elements // block * type_size))
    data_start = padded(cur.pos, alignment)
    tensors: dict[str, tuple[int, int]] = {}
    end_prev, prev = 0, None
    for name, offset, nbytes in sorted(infos, key=lambda t: t[1]):
        if offset % alignment:
            raise cur.fail(f"tensor {name!r} at data offset {offset} is not aligned to {alignment}")
        if data_start + offset + nbytes > cur.size:
            raise cur.fail(f"tensor {name!r} ({nbytes} bytes at data offset {offset}) lies beyond the end of the file ({cur.size} bytes)")
        if offset < end_prev:
            raise cur.fail(f"tensor {name!r} at data offset {offset} overlaps {prev!r}")
        end_prev, prev = offset + nbytes, name
        tensors[name] = (data_start + offset, nbytes)
    return GGUFLayout(version, n_kv, alignment, data_start, tensors)


def open_gguf(path: "str | Path") -> gguf.GGUFReader:
    """gguf.GGUFReader on a file that passed :func:`check_gguf`: the one way dsq opens GGUF
    files it did not just write. Anything the reader still refuses is a GGUFFormatError."""
    check_gguf(path)
    try:
        return gguf.GGUFReader(path)
    except (ValueError, KeyError, IndexError, TypeError, OverflowError) as e:
        raise GGUFFormatError(f"{path}: {e}") from e
