"""Deployment fit from config.json alone: KV cache formulas, placement, verdicts, the CLI."""
from __future__ import annotations

import json

import pytest

from dsq import cli
from quant import configs, fit

R1 = configs.load_config("DeepSeek-R1")


def test_it_sizes_the_mla_cache_as_one_latent_row_per_token_and_layer():
    assert fit.kv_elements_per_token(R1, "mla") == (512 + 64, 0)
    result = fit.fit(R1, fit.tensor_bytes(R1, "Q4_K_M"), fit.HARDWARE["8xH100-80GB"], 4096)
    assert result.kv_bytes == 61 * 4096 * 576 * 2


def test_it_sizes_the_full_cache_as_per_head_k_and_v():
    assert fit.kv_elements_per_token(R1, "full") == (128 * (128 + 64), 128 * 128)
    result = fit.fit(R1, fit.tensor_bytes(R1, "Q4_K_M"), fit.HARDWARE["8xH100-80GB"], 4096, kv_cache="full")
    assert result.kv_bytes == 61 * 4096 * (24576 + 16384) * 2


def test_it_counts_q8_0_cache_as_34_bytes_per_32_values():
    assert fit.cache_row_bytes(576, "q8_0") == 18 * 34
    f16 = fit.fit(R1, fit.tensor_bytes(R1, "Q4_K_M"), fit.HARDWARE["8xH100-80GB"], 8192)
    q8 = fit.fit(R1, fit.tensor_bytes(R1, "Q4_K_M"), fit.HARDWARE["8xH100-80GB"], 8192, cache_type="q8_0")
    assert q8.kv_bytes * 64 == f16.kv_bytes * 34


def test_it_pads_the_context_like_llama_cpp():
    a = fit.fit(R1, fit.tensor_bytes(R1, "Q8_0"), fit.HARDWARE["8xH100-80GB"], 1000)
    assert a.kv_bytes == 61 * 1024 * 576 * 2


def test_it_uses_gqa_for_the_distills_in_both_modes():
    qwen = configs.load_config("DeepSeek-R1-Distill-Qwen-7B")
    assert fit.kv_elements_per_token(qwen, "mla") == fit.kv_elements_per_token(qwen, "full") == (4 * 128, 4 * 128)


def test_it_places_layers_like_llama_cpps_even_split():
    result = fit.fit(R1, fit.tensor_bytes(R1, "Q4_K_M"), fit.HARDWARE["8xH100-80GB"], 4096)
    assert result.gpus[0].layers == list(range(8))  # 62 layers (61 + output) over 8 GPUs
    assert sorted(i for g in result.gpus for i in g.layers) == list(range(61))
    tensors = dict(fit.tensor_bytes(R1, "Q4_K_M"))
    assert result.host_weights_bytes == tensors["token_embd.weight"]
    assert sum(g.weights_bytes for g in result.gpus) + result.host_weights_bytes == result.weights_bytes
    assert result.gpus[-1].compute_bytes > result.gpus[0].compute_bytes  # the logits live with the output head


def test_it_says_r1_dq3_fits_8xh100_but_not_8xa100_40gb():
    tensors = fit.tensor_bytes(R1, "DQ3_K_M")
    assert fit.fit(R1, tensors, fit.parse_hardware("8xH100-80GB"), 32768).fits
    small = fit.fit(R1, tensors, fit.parse_hardware("8xA100-40GB"), 32768)
    assert not small.fits and small.per_gpu_bytes > small.hardware.gpu_bytes


def test_it_parses_custom_hardware():
    hw = fit.parse_hardware("custom:4x48GB")
    assert (hw.n_gpu, hw.gpu_bytes) == (4, 48 << 30)
    assert fit.parse_hardware("custom:2x24576MiB").gpu_bytes == 24 << 30
    with pytest.raises(ValueError, match="unknown hardware"):
        fit.parse_hardware("a-toaster")


def test_it_spreads_a_known_total_in_proportion_to_parameters():
    tensors = fit.tensor_bytes_from_total(R1, 300 << 30)
    assert abs(sum(b for _, b in tensors) - (300 << 30)) < len(tensors)


def test_the_cli_prints_json_with_the_verdict(capsys):
    code = cli.main(["fit", "--config", "DeepSeek-R1", "--recipe", "Q4_K_M", "--hardware", "custom:4x48GB",
                     "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["fits"] is False
    assert out["per_gpu_bytes"] > 48 << 30 and out["total_bytes"] > out["weights_bytes"]


def test_the_cli_prints_a_table_for_every_profile(capsys):
    assert cli.main(["fit", "--config", "DeepSeek-R1", "--recipe", "DQ3_K_M", "--context", "8192"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in fit.HARDWARE) and "NO" in out and "yes" in out


def test_the_cli_explains_a_missing_recipe(capsys):
    assert cli.main(["fit", "--config", "DeepSeek-R1"]) == 2
    assert "--recipe" in capsys.readouterr().err


def test_custom_hardware_is_bounded():
    assert fit.parse_hardware(f"custom:{fit.MAX_GPUS}x4096GB").n_gpu == fit.MAX_GPUS
    for spec, message in [(f"custom:{fit.MAX_GPUS + 1}x80GB", "from 1 to 64 GPUs"), ("custom:0x80GB", "GPUs"),
                          ("custom:4x4097GB", "memory"), ("custom:4x0.5MB", "memory"),
                          ("custom:1000000000000x80GB", "unknown hardware")]:
        with pytest.raises(ValueError, match=message):
            fit.parse_hardware(spec)


@pytest.mark.parametrize("context,ubatch,message", [(0, None, "context"), (fit.MAX_CONTEXT + 1, None, "context"),
                                                    (10**26, None, "context"), (4096, 0, "ubatch"),
                                                    (4096, 4097, "ubatch")])
def test_the_question_is_bounded(context, ubatch, message):
    with pytest.raises(ValueError, match=message):
        fit.fit(R1, [], fit.HARDWARE["8xH100-80GB"], context, n_ubatch=ubatch)


def test_the_default_ubatch_shrinks_to_a_short_context():
    short = fit.fit(R1, [], fit.HARDWARE["8xH100-80GB"], 100, flash_attn=True)
    assert short.gpus[0].compute_bytes == fit.compute_bytes(R1, 100, n_ubatch=100, flash_attn=True)
