"""A conversion interrupted after tensor k resumes from its per-tensor cache, byte for byte."""
from __future__ import annotations

import pytest

from quant import convert
from quant.progress import Callbacks
from quant.tiny import TinySpec, make_tiny

SPEC = TinySpec(num_hidden_layers=2, n_routed_experts=4, num_experts_per_tok=2, n_group=2, topk_group=1,
                vocab_size=512, n_merges=50, num_nextn_predict_layers=0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny(tmp_path_factory.mktemp("tiny") / "model", SPEC)


def test_an_interrupted_conversion_resumes_from_cached_tensors_byte_identically(tiny, tmp_path):
    whole = convert.convert(tiny, tmp_path / "whole", "Q4_K_M", stats=False)

    cache = tmp_path / "cache"
    seen = []

    def stop_after_five(p):
        if p.message:
            seen.append(p.index)

    with pytest.raises(convert.ConversionCancelled):
        convert.convert(tiny, tmp_path / "resumed", "Q4_K_M", stats=False, tensor_cache_dir=cache,
                        reporter=Callbacks(stop_after_five, lambda: len(seen) >= 5))
    assert len(list(cache.glob("*.bin"))) == 5 and not list((tmp_path / "resumed").glob("*.gguf"))

    quantized = []
    resumed = convert.convert(tiny, tmp_path / "resumed", "Q4_K_M", stats=False, tensor_cache_dir=cache,
                              reporter=Callbacks(lambda p: quantized.append(p.index)))
    assert [f.sha256 for f in resumed.files] == [f.sha256 for f in whole.files]
    assert [f.path.read_bytes() for f in resumed.files] == [f.path.read_bytes() for f in whole.files]


def test_a_corrupted_cached_tensor_is_quantized_again(tiny, tmp_path):
    cache = tmp_path / "cache"
    first = convert.convert(tiny, tmp_path / "a", "Q4_K_M", stats=False, tensor_cache_dir=cache)
    victim = sorted(cache.glob("*.bin"))[0]
    victim.write_bytes(b"\0" * victim.stat().st_size)
    again = convert.convert(tiny, tmp_path / "b", "Q4_K_M", stats=False, tensor_cache_dir=cache)
    assert [f.sha256 for f in again.files] == [f.sha256 for f in first.files]


def test_a_cache_left_by_another_recipe_is_not_replayed(tiny, tmp_path):
    cache = tmp_path / "cache"
    convert.convert(tiny, tmp_path / "q4", "Q4_K_M", stats=False, tensor_cache_dir=cache)
    fresh = convert.convert(tiny, tmp_path / "q8-fresh", "Q8_0", stats=False)
    reused = convert.convert(tiny, tmp_path / "q8", "Q8_0", stats=False, tensor_cache_dir=cache)
    assert [f.sha256 for f in reused.files] == [f.sha256 for f in fresh.files]
    assert all("Q4_K" not in p.name for p in cache.glob("*.bin"))  # the Q4_K_M tensors were dropped


def test_a_cache_of_changed_source_files_is_not_replayed(tmp_path):
    src = make_tiny(tmp_path / "model", SPEC)
    cache = tmp_path / "cache"
    first = convert.convert(src, tmp_path / "a", "Q4_K_M", stats=False, tensor_cache_dir=cache)
    make_tiny(tmp_path / "model", TinySpec(**{**SPEC.__dict__, "seed": 1}))  # new weights, same names
    again = convert.convert(src, tmp_path / "b", "Q4_K_M", stats=False, tensor_cache_dir=cache)
    fresh = convert.convert(src, tmp_path / "c", "Q4_K_M", stats=False)
    assert [f.sha256 for f in again.files] == [f.sha256 for f in fresh.files] != [f.sha256 for f in first.files]
