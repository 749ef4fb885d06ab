import numpy as np

from quant.eval.model import EvalSettings
from quant.eval.reference import ReferenceLogits, cached_reference
from quant.hashing import file_sha256

SETTINGS = EvalSettings(n_ctx=64, max_windows=2, threads=2)


def test_it_round_trips_through_the_npz_file(smollm2, eval_text, tmp_path):
    ref = cached_reference(smollm2, eval_text, tmp_path, SETTINGS, top_k=16)
    (path,) = tmp_path.glob("*.npz")

    loaded = ReferenceLogits.load(path)

    assert path.name == ref.key.filename()
    assert loaded.key == ref.key
    assert loaded.key.model_sha256 == file_sha256(smollm2)
    assert loaded.top_ids.dtype == np.int32 and loaded.top_ids.shape == (2 * 31, 16)
    for name in ("top_ids", "top_logprobs", "rest_logprob", "targets", "target_logprob"):
        assert np.array_equal(getattr(loaded, name), getattr(ref, name)), name
    assert loaded.perplexity == ref.perplexity


def test_a_cached_reference_is_reused_without_running_the_model(smollm2, eval_text, tmp_path):
    ref = cached_reference(smollm2, eval_text, tmp_path, SETTINGS, top_k=16)

    again = cached_reference(tmp_path / "not-a-model.gguf", eval_text, tmp_path, SETTINGS, top_k=16,
                             model_sha256=ref.key.model_sha256)

    assert np.array_equal(again.top_logprobs, ref.top_logprobs)
