"""The GGUF writer state machine, key/value packing and gguf-split planning."""
from __future__ import annotations

import gguf
import numpy as np
import pytest

from quant.gguf_file import (
    KV,
    MAX_SHARDS,
    GGUFFileWriter,
    TensorInfo,
    WriterError,
    plan_shards,
    reader_kvs,
    shard_name,
)

T = gguf.GGUFValueType


def _infos():
    return [TensorInfo("a.weight", (2, 8), "F32", 64), TensorInfo("b.weight", (3,), "F32", 12)]


def test_written_file_reads_back_with_gguf_reader(tmp_path):
    kvs = [
        KV("general.architecture", T.STRING, "llama"),
        KV("x.u32", T.UINT32, 7),
        KV("x.f32", T.FLOAT32, 0.5),
        KV("x.bool", T.BOOL, True),
        KV("x.strings", T.ARRAY, ["a", "bé"], T.STRING),
        KV("x.ints", T.ARRAY, [1, -2, 3], T.INT32),
    ]
    w = GGUFFileWriter(tmp_path / "t.gguf", kvs, _infos())
    w.write_header()
    a = np.arange(16, dtype=np.float32)
    w.begin_tensor("a.weight")
    w.write(a[:5].tobytes())
    w.write(a[5:].tobytes())
    w.end_tensor()
    w.begin_tensor("b.weight")
    w.write(np.ones(3, np.float32).tobytes())
    w.end_tensor()
    size, sha = w.close()

    data = (tmp_path / "t.gguf").read_bytes()
    assert size == len(data)
    import hashlib

    assert sha == hashlib.sha256(data).hexdigest()
    r = gguf.GGUFReader(tmp_path / "t.gguf")
    assert r.fields["x.u32"].contents() == 7 and r.fields["x.bool"].contents() is True
    assert r.fields["x.strings"].contents() == ["a", "bé"] and r.fields["x.ints"].contents() == [1, -2, 3]
    ta, tb = r.tensors
    assert ta.name == "a.weight" and list(ta.shape) == [8, 2] and np.array_equal(np.asarray(ta.data).ravel(), a)
    assert tb.data_offset % 32 == 0
    # round trip of the key/values, types included
    again = {kv.key: kv for kv in reader_kvs(r)}
    assert again["x.ints"].sub_type == T.INT32 and again["x.f32"].type == T.FLOAT32


def test_the_writer_refuses_out_of_order_and_wrong_sizes(tmp_path):
    w = GGUFFileWriter(tmp_path / "t.gguf", [], _infos())
    with pytest.raises(WriterError, match="expected"):
        w.begin_tensor("a.weight")  # header first
    w.write_header()
    with pytest.raises(WriterError, match="out of order"):
        w.begin_tensor("b.weight")
    w.begin_tensor("a.weight")
    with pytest.raises(WriterError, match="more than the planned"):
        w.write(b"\0" * 65)
    w.write(b"\0" * 60)
    with pytest.raises(WriterError, match="wrote 60 bytes"):
        w.end_tensor()
    w.write(b"\0" * 4)
    w.end_tensor()
    with pytest.raises(WriterError, match="closed after 1 of 2"):
        w.close()
    w.abort()


def test_shards_follow_gguf_split():
    infos = [TensorInfo(f"t{i}", (100,), "F32", 400) for i in range(10)]
    shards = plan_shards(infos, 1000)  # 416 bytes padded each: two per shard
    assert [len(s) for s in shards] == [2, 2, 2, 2, 2]
    assert plan_shards(infos, None) == [infos]
    big = [TensorInfo("big", (1000,), "F32", 4000)] + infos[:1]
    assert [len(s) for s in plan_shards(big, 1000)] == [1, 1]  # an oversized tensor gets its own file
    assert shard_name("m", 0, 3) == "m-00001-of-00003.gguf" and shard_name("m", 0, 1) == "m.gguf"


def test_more_than_64_shards_is_refused():
    infos = [TensorInfo(f"t{i}", (100,), "F32", 400) for i in range(MAX_SHARDS + 1)]
    with pytest.raises(ValueError, match="at most 64"):
        plan_shards(infos, 400)
    assert len(plan_shards(infos, 832)) <= MAX_SHARDS
