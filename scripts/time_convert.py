"""Time one whole conversion (safetensors -> Q4_K_M GGUF) of a tiny DeepSeek (162M weights at 6 layers), kernels warm.

Usage: PYTHONPATH=. .venv/bin/python scripts/time_convert.py LABEL [LAYERS]  (run it on two checkouts to compare
them, interleaved, several times; LAYERS defaults to 6). Prints the conversion's wall and process CPU seconds and
the load average. The compiled kernels are warmed (and traced) before timing, so only the conversion is timed.
Timings depend on OpenMP's wait policy: compare processes with the same OMP_WAIT_POLICY (HACKING.md).
"""
import os, sys, time, tempfile, pathlib, resource, shutil
from quant.tiny import TinySpec, make_tiny
from quant import convert
layers = int(sys.argv[2]) if len(sys.argv) > 2 else 6
d = pathlib.Path(tempfile.mkdtemp())
spec = TinySpec(num_hidden_layers=layers, n_routed_experts=16, num_experts_per_tok=2, n_group=4, topk_group=2,
                hidden_size=768, moe_intermediate_size=768, intermediate_size=1536, vocab_size=512,
                n_merges=50, num_nextn_predict_layers=0)
ck = make_tiny(d / "model", spec)
import kernels, torch
for t in ["Q4_K", "Q6_K", "Q5_K", "Q8_0"]:
    kernels.quantize(torch.randn(64, 768), t)  # the eager codecs
    kernels.quantize(torch.randn(1536, 768), t)  # the compiled kernels (>= 2**20 weights), threaded


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


t0, c0 = time.time(), cpu()
r = convert.convert(ck, d / "out", "Q4_K_M", name="x")
print(sys.argv[1], "convert s", round(time.time() - t0, 1), "cpu s", round(cpu() - c0, 1),
      "load", os.getloadavg()[0], "OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY"), flush=True)
shutil.rmtree(d)
