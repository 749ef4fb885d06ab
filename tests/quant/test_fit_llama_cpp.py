"""quant.fit's KV caches for the new attention layouts against llama.cpp's own projection.

llama-fit-params (built from the vendored source) loads a tiny GGUF without allocating its weights,
creates the context and logs what it would take ("memory breakdown [MiB]": the host's self = model +
context + compute); with -v it also logs every cache it creates ("llama_kv_cache: size = 80.00 MiB
( 65536 cells, 2 layers, …)", and V4's compressor states, "llama_dsv4_comp_state: csa ratio = 4,
state = 8 x 256, …, layers = 2, size = 0.03 MiB"). Not --fit-print: that mode exits without flushing
llama.cpp's log thread, and the debug lines come back in about half the runs; the fitting mode
flushes the log before it prints its answer (-c is given and the margin is 0: it changes nothing).
Each of dsq's caches (quant.fit.kv_caches) must have llama.cpp's cells, layers and size (to the
logged 0.01 MiB), and their sum llama.cpp's context MiB. Contexts: a short one that is padded, a long
one where the indexer and V4's compressed caches dominate, and the q8_0 cache type.
"""
from __future__ import annotations

import json
import re
import subprocess

import pytest

from quant import fit
from quant.convert import convert
from quant.tiny import make_tiny
from quant.tiny_v4 import TinyV4Spec, make_tiny_v4
from tests.quant.test_convert_deepseek32 import V32_SPEC

MiB = 1 << 20
CASES = [(1000, "f16"), (65536, "f16"), (65536, "q8_0")]

_KV_LINE = re.compile(r"llama_kv_cache: size =\s*([\d.]+) MiB \(\s*(\d+) cells,\s*(\d+) layers")
_HOST_LINE = re.compile(r"\|\s+- Host\s+\|\s+(\d+) =\s+(\d+) \+\s+(\d+) \+\s+(\d+)")
_STATE_LINE = re.compile(r"llama_dsv4_comp_state: \w+ ratio = \d+, state = (\d+) x (\d+), streams = 1, rs_seq = 0, "
                         r"layers = (\d+), size =\s*([\d.]+) MiB")


@pytest.fixture(scope="module")
def v32(tmp_path_factory):
    """(config, dsq's Q8_0 GGUF) of the tiny V3.2 (the MTP block is in the file, not in the cache)."""
    src = make_tiny(tmp_path_factory.mktemp("v32") / "tiny-v32", V32_SPEC, fp8=True)
    gguf = convert(src, src.parent / "q", "Q8_0", stats=False).files[0].path
    return json.loads((src / "config.json").read_text()), gguf


@pytest.fixture(scope="module")
def v4(tmp_path_factory):
    """(config, dsq's Q8_0 GGUF) of the tiny V4: ratios 0, 4, 128, 4 (a window-only layer, CSA, HCA)."""
    src = make_tiny_v4(tmp_path_factory.mktemp("v4") / "tiny-v4", TinyV4Spec())
    gguf = convert(src, src.parent / "q", "Q8_0", stats=False).files[0].path
    return json.loads((src / "config.json").read_text()), gguf


def llama_fit_params(llama_tools, gguf, context: int, cache_type: str = "f16") -> tuple[int, int, list, list]:
    """(model MiB, context MiB, [(MiB, cells, layers)] per cache, [(MiB, state, width, layers)] per compressor
    state)."""
    out = subprocess.run([str(llama_tools / "llama-fit-params"), "-m", str(gguf), "-v", "-t", "1", "--fit-target", "0",
                          "-c", str(context), "-ctk", cache_type, "-ctv", cache_type],
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split()[:2] == ["-c", str(context)], out.stdout
    (host,) = _HOST_LINE.findall(out.stderr)  # a CPU-only build: everything is on the host
    caches = [(float(m), int(c), int(n)) for m, c, n in _KV_LINE.findall(out.stderr) if int(n)]
    states = [(float(m), int(s), int(w), int(n)) for s, w, n, m in _STATE_LINE.findall(out.stderr) if int(n)]
    return int(host[1]), int(host[2]), caches, states  # host: (self, model, context, compute)


def dsq_caches(config, context: int, cache_type: str) -> tuple[list, list]:
    """quant.fit.kv_caches in the form llama_fit_params reads them (sizes rounded as llama.cpp logs them)."""
    caches, states = [], []
    for c in fit.kv_caches(config, context, cache_type=cache_type):
        if not c.layers:
            continue
        mib = round(c.total_bytes / MiB, 2)
        if c.tensors == 1:
            caches.append((mib, c.cells, len(c.layers)))
        else:
            states.append((mib, c.cells, c.row_elements, len(c.layers)))
    return caches, states


@pytest.mark.parametrize("context,cache_type", CASES)
@pytest.mark.parametrize("model", ["v32", "v4"])
def test_kv_caches_are_llama_cpps(model, context, cache_type, request, llama_tools):
    config, gguf = request.getfixturevalue(model)
    _, context_mib, caches, states = llama_fit_params(llama_tools, gguf, context, cache_type)
    assert dsq_caches(config, context, cache_type) == (caches, states)
    one_gpu = fit.fit(config, [], fit.Hardware("one", 1, 1 << 40), context, cache_type=cache_type)
    assert one_gpu.kv_bytes == sum(c.total_bytes for c in fit.kv_caches(config, context, cache_type=cache_type))
    assert one_gpu.kv_bytes // MiB == context_mib


@pytest.mark.parametrize("model", ["v32", "v4"])
def test_weights_are_llama_cpps_without_the_mtp_block(model, request, llama_tools):
    """llama.cpp's main context never loads the MTP block deepseek32's file keeps (V4's file has none)."""
    config, gguf = request.getfixturevalue(model)
    model_mib, _, _, _ = llama_fit_params(llama_tools, gguf, 4096)
    tensors = fit.tensor_bytes(config, "Q8_0")
    one_gpu = fit.fit(config, tensors, fit.Hardware("one", 1, 1 << 40), 4096)
    assert one_gpu.weights_bytes // MiB == model_mib
    mtp = sum(b for name, b in tensors if name.startswith(f"blk.{config['num_hidden_layers']}."))
    assert (mtp > MiB) == (model == "v32") and one_gpu.weights_bytes == sum(b for _, b in tensors) - mtp


def test_v32_adds_the_indexer_to_the_mla_cache_on_the_trunk_only(v32):
    config, _ = v32
    k, indexer = fit.kv_caches(config, 4096)
    assert (k.row_elements, indexer.row_elements) == (256 + 64, 128)
    assert k.layers == indexer.layers == (0, 1)  # block 2 is the MTP block


def test_v4_full_size_numbers():
    """DeepSeek-V4-Flash at 1M tokens: the window is 640 tokens, the compressed caches a quarter and 1/128."""
    from quant import configs
    flash = configs.load_config("DeepSeek-V4-Flash")
    by_name = {c.name: c for c in fit.kv_caches(flash, 1 << 20)}
    assert by_name["window"].cells == 768 and len(by_name["window"].layers) == 43
    assert by_name["csa"].cells == by_name["indexer"].cells == (1 << 20) // 4
    assert by_name["hca"].cells == (1 << 20) // 128
