"""Property tests of the GGUF reading boundary (quant.gguf_file.open_gguf, and GGUFSource on
top of it): any truncation or byte mutation of a small valid file either reads back with
every tensor inside the file -- the same tensors when only tensor data changed -- or raises
GGUFFormatError (SourceError from GGUFSource). Never another exception, never a hang: each
example has a deadline, and the reader must not walk past what the file holds."""
from __future__ import annotations

import tempfile
from pathlib import Path

import gguf
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quant.gguf_file import GGUFFormatError, check_gguf, open_gguf
from quant.sources import GGUFSource, SourceError

SETTINGS = settings(max_examples=150, deadline=2000, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _valid_file(path: Path) -> bytes:
    """Key/values of several types (strings, a string array, an int array, floats) and three
    tensors (F32 2-D, F16 1-D, Q8_0 raw bytes): every part of the header is represented."""
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_block_count(1)
    w.add_array("tokenizer.ggml.tokens", ["a", "bc", "déf"])
    w.add_array("tokenizer.ggml.token_type", [1, 2, 3])
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_tensor("blk.0.attn_q.weight", np.arange(64, dtype=np.float32).reshape(2, 32))
    w.add_tensor("output_norm.weight", np.ones(32, dtype=np.float16))
    w.add_tensor("blk.0.ffn_up.weight", np.zeros((2, 34), dtype=np.uint8), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


_DIR = Path(tempfile.mkdtemp(prefix="dsq-gguf-props-"))
VALID = _valid_file(_DIR / "valid.gguf")
LAYOUT = check_gguf(_DIR / "valid.gguf")
TENSORS = {t.name: (t.tensor_type, tuple(t.shape.tolist())) for t in gguf.GGUFReader(_DIR / "valid.gguf").tensors}


def _tensors(reader: gguf.GGUFReader) -> dict:
    return {t.name: (t.tensor_type, tuple(t.shape.tolist())) for t in reader.tensors}


def _read_back(data: bytes) -> "dict | None":
    """The tensors of `data` as open_gguf sees them, None if refused; GGUFSource must agree."""
    path = _DIR / "case.gguf"
    path.write_bytes(data)
    try:
        reader = open_gguf(path)
    except GGUFFormatError as e:
        assert str(path) in str(e)
        refused = True
    else:
        refused = False
        for t in reader.tensors:  # inside the file, and readable
            assert int(t.data_offset) + int(t.n_bytes) <= len(data)
            assert np.asarray(t.data).nbytes == int(t.n_bytes)
    try:
        GGUFSource(path)
    except SourceError:
        pass  # also refused for what GGUFSource requires beyond the format (general.architecture)
    else:
        assert not refused
    return None if refused else _tensors(reader)


def test_the_valid_file_reads_back():
    assert _read_back(VALID) == TENSORS and len(TENSORS) == 3


@SETTINGS
@given(cut=st.integers(0, len(VALID) - 1))
def test_a_truncated_file_is_refused_or_loses_only_padding(cut):
    got = _read_back(VALID[:cut])
    last_end = max(offset + n for offset, n in LAYOUT.tensors.values())
    assert got is None or (cut >= last_end and got == TENSORS)


@SETTINGS
@given(edits=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_bytes_are_refused_or_read_consistently(edits):
    data = bytearray(VALID)
    for pos, byte in edits:
        data[pos] = byte
    got = _read_back(bytes(data))
    if all(pos >= LAYOUT.data_start for pos, _ in edits):
        assert got == TENSORS  # only tensor data changed: the same tensors


@SETTINGS
@given(pos=st.integers(0, LAYOUT.data_start - 8), value=st.sampled_from([0, 1, 31, 1 << 31, 1 << 32, 1 << 62, (1 << 64) - 1]))
def test_a_lying_64_bit_field_in_the_header_is_refused_or_read_consistently(pos, value):
    """Counts, lengths, dims and offsets are 64-bit: overwrite any aligned-or-not 8 bytes of
    the header with an extreme value."""
    data = bytearray(VALID)
    data[pos : pos + 8] = value.to_bytes(8, "little")
    _read_back(bytes(data))


@SETTINGS
@given(extra=st.binary(min_size=1, max_size=64))
def test_bytes_appended_after_the_data_change_nothing(extra):
    assert _read_back(VALID + extra) == TENSORS
