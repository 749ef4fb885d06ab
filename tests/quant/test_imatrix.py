"""Importance-matrix files in llama.cpp's legacy (.dat) and GGUF formats."""
from __future__ import annotations

import numpy as np
import pytest

from quant.imatrix import ImatrixError, load_imatrix, save_gguf, save_legacy


def test_gguf_format_divides_each_matrix_by_its_own_count(tmp_path):
    sums = np.arange(12, dtype=np.float32).reshape(3, 4)
    save_gguf(tmp_path / "m.gguf", {"blk.0.ffn_up_exps.weight": (sums, np.array([2, 0, 4], np.float32))},
              ["wiki.txt"], chunk_count=5, chunk_size=512)
    im = load_imatrix(tmp_path / "m.gguf")
    got = im.for_tensor("blk.0.ffn_up_exps.weight", 4, 3).numpy()
    np.testing.assert_array_equal(got, [[0, 0.5, 1, 1.5], [1, 1, 1, 1], [2, 2.25, 2.5, 2.75]])  # unhit expert -> 1
    assert im.datasets == ["wiki.txt"] and im.chunk_count == 5
    assert im.for_tensor("blk.9.attn_q_a.weight", 4, 1) is None


def test_legacy_format_divides_by_ncall(tmp_path):
    save_legacy(tmp_path / "m.dat", {"blk.0.attn_q_a.weight": (4, np.array([4, 8, 12, 16], np.float32))},
                chunk_count=10, dataset="c4.txt")
    im = load_imatrix(tmp_path / "m.dat")
    np.testing.assert_array_equal(im.data["blk.0.attn_q_a.weight"].numpy(), [1, 2, 3, 4])
    assert im.datasets == ["c4.txt"] and im.chunk_count == 10


def test_a_wrong_size_is_an_error_except_for_token_embd(tmp_path):
    v = np.ones(8, np.float32)
    save_legacy(tmp_path / "m.dat", {"blk.0.attn_q_a.weight": (1, v), "token_embd.weight": (1, v)})
    im = load_imatrix(tmp_path / "m.dat")
    with pytest.raises(ImatrixError, match="different from tensor size 4"):
        im.for_tensor("blk.0.attn_q_a.weight", 4, 1)
    assert im.for_tensor("token_embd.weight", 4, 1) is None


def test_non_finite_values_and_missing_metadata_are_refused(tmp_path):
    save_legacy(tmp_path / "nan.dat", {"a.weight": (1, np.array([1, np.nan], np.float32))})
    with pytest.raises(ImatrixError, match="non-finite"):
        load_imatrix(tmp_path / "nan.dat")
    import gguf

    w = gguf.GGUFWriter(str(tmp_path / "bare.gguf"), arch="imatrix")
    w.add_tensor("a.weight.in_sum2", np.ones((1, 4), np.float32))
    w.add_tensor("a.weight.counts", np.ones((1, 1), np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    with pytest.raises(ImatrixError, match="missing imatrix metadata"):
        load_imatrix(tmp_path / "bare.gguf")
