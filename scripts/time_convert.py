"""Time one whole conversion (safetensors -> Q4_K_M GGUF) of a 162M-weight tiny DeepSeek, kernels warm.

Usage: PYTHONPATH=. .venv/bin/python scripts/time_convert.py LABEL  (run it on two checkouts to compare them).
"""
import sys, time, tempfile, pathlib
from quant.tiny import TinySpec, make_tiny
from quant import convert
d = pathlib.Path(tempfile.mkdtemp())
spec = TinySpec(num_hidden_layers=6, n_routed_experts=16, num_experts_per_tok=2, n_group=4, topk_group=2,
                hidden_size=768, moe_intermediate_size=768, intermediate_size=1536, vocab_size=512,
                n_merges=50, num_nextn_predict_layers=0)
ck = make_tiny(d / "model", spec)
import kernels, torch
for t in ["Q4_K", "Q6_K", "Q5_K", "Q8_0"]:
    kernels.quantize(torch.randn(64, 768), t)  # warm the compiled kernels
t0 = time.time()
r = convert.convert(ck, d / "out", "Q4_K_M", name="x")
print(sys.argv[1], "convert s", round(time.time() - t0, 1), flush=True)
