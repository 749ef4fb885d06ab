"""SmolLM2-135M-Instruct (real weights, llama architecture) through our converter into llama.cpp."""
from __future__ import annotations

import gguf
import numpy as np
import pytest

from quant.convert import convert
from tests.quant.llama_ref import llama_quantize, mismatches
from tests.tiny_models import llama_logits, reference_logits, smollm2_gguf

llama_cpp = pytest.importorskip("llama_cpp")

PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def smollm2_f32(smollm2_dir, tmp_path_factory):
    return convert(smollm2_dir, tmp_path_factory.mktemp("smollm2"), "F32", stats=False).files[0].path


def _tokens(model_dir):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(model_dir / "tokenizer.json")).encode(PROMPT).ids


def test_f32_logits_match_transformers(smollm2_dir, smollm2_f32):
    tokens = _tokens(smollm2_dir)
    ref = reference_logits(smollm2_dir, tokens)
    got = llama_logits(smollm2_f32, tokens)
    assert np.abs(got - ref).max() < 1e-3
    assert (got.argmax(axis=1) == ref.argmax(axis=1)).all()


def test_tokenizer_metadata_matches_the_published_gguf(smollm2_dir, smollm2_f32):
    ours, theirs = gguf.GGUFReader(smollm2_f32).fields, gguf.GGUFReader(smollm2_gguf()).fields
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.add_bos_token", "tokenizer.chat_template", "llama.rope.dimension_count",
                "llama.attention.head_count_kv", "llama.rope.freq_base"):
        assert ours[key].contents() == theirs[key].contents(), key
    assert "output.weight" not in {t.name for t in gguf.GGUFReader(smollm2_f32).tensors}  # tied embeddings
    llm = llama_cpp.Llama(str(smollm2_f32), vocab_only=True, verbose=False)
    try:
        assert llm.tokenize(PROMPT.encode(), add_bos=False, special=True) == _tokens(smollm2_dir)
    finally:
        llm.close()


@pytest.mark.parametrize("recipe", ["Q8_0", pytest.param("Q4_K_M", marks=pytest.mark.slow)])
def test_requantizing_the_f32_gguf_is_byte_identical_to_llama_quantize(recipe, smollm2_f32, tmp_path):
    # SmolLM2's rows of 576 are no multiple of 256: Q4_K_M exercises llama.cpp's fallbacks on a real model
    ours = convert(smollm2_f32, tmp_path, recipe, stats=False).files[0].path
    theirs = llama_quantize(smollm2_f32, tmp_path / f"llama-{recipe}.gguf", recipe)
    assert mismatches(ours, theirs) == []
