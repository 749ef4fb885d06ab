"""The DeepSeek checkpoints (and Moonshot's DeepSeek-V3-shaped Kimi-K2) dsq serves out of the box, as data.

Configs come from quant.configs (the public config.json files), so plans and fit work before
any weights are downloaded. Revisions are left empty until the files are first fetched: the
downloader pins the Hub commit it actually got.
"""
from __future__ import annotations

CHECKPOINTS: list[dict[str, str]] = [
    {"name": "deepseek-v3", "family": "DeepSeek-V3", "hf_repo": "deepseek-ai/DeepSeek-V3", "source_dtype": "FP8"},
    {"name": "deepseek-v3-0324", "family": "DeepSeek-V3-0324", "hf_repo": "deepseek-ai/DeepSeek-V3-0324",
     "source_dtype": "FP8"},
    {"name": "deepseek-r1", "family": "DeepSeek-R1", "hf_repo": "deepseek-ai/DeepSeek-R1", "source_dtype": "FP8"},
    {"name": "deepseek-r1-0528", "family": "DeepSeek-R1-0528", "hf_repo": "deepseek-ai/DeepSeek-R1-0528",
     "source_dtype": "FP8"},
    {"name": "deepseek-v3.1", "family": "DeepSeek-V3.1", "hf_repo": "deepseek-ai/DeepSeek-V3.1", "source_dtype": "FP8"},
    {"name": "deepseek-v3.1-terminus", "family": "DeepSeek-V3.1-Terminus",
     "hf_repo": "deepseek-ai/DeepSeek-V3.1-Terminus", "source_dtype": "FP8"},
    {"name": "deepseek-v3.2-exp", "family": "DeepSeek-V3.2-Exp", "hf_repo": "deepseek-ai/DeepSeek-V3.2-Exp",
     "source_dtype": "FP8"},
    {"name": "deepseek-v3.2", "family": "DeepSeek-V3.2", "hf_repo": "deepseek-ai/DeepSeek-V3.2", "source_dtype": "FP8"},
    {"name": "deepseek-v3.2-speciale", "family": "DeepSeek-V3.2-Speciale",
     "hf_repo": "deepseek-ai/DeepSeek-V3.2-Speciale", "source_dtype": "FP8"},
    # V4: FP8 in 128x128 blocks, routed experts MXFP4 (the Dtype choices name the non-expert weights)
    {"name": "deepseek-v4-flash", "family": "DeepSeek-V4-Flash", "hf_repo": "deepseek-ai/DeepSeek-V4-Flash",
     "source_dtype": "FP8"},
    {"name": "deepseek-v4-pro", "family": "DeepSeek-V4-Pro", "hf_repo": "deepseek-ai/DeepSeek-V4-Pro",
     "source_dtype": "FP8"},
    {"name": "kimi-k2-instruct", "family": "Kimi-K2-Instruct", "hf_repo": "moonshotai/Kimi-K2-Instruct",
     "source_dtype": "FP8"},
    {"name": "r1-distill-qwen-1.5b", "family": "DeepSeek-R1-Distill-Qwen-1.5B",
     "hf_repo": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "source_dtype": "BF16"},
    {"name": "r1-distill-qwen-7b", "family": "DeepSeek-R1-Distill-Qwen-7B",
     "hf_repo": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "source_dtype": "BF16"},
    {"name": "r1-distill-qwen-14b", "family": "DeepSeek-R1-Distill-Qwen-14B",
     "hf_repo": "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "source_dtype": "BF16"},
    {"name": "r1-distill-qwen-32b", "family": "DeepSeek-R1-Distill-Qwen-32B",
     "hf_repo": "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "source_dtype": "BF16"},
    {"name": "r1-distill-llama-8b", "family": "DeepSeek-R1-Distill-Llama-8B",
     "hf_repo": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "source_dtype": "BF16"},
    {"name": "r1-distill-llama-70b", "family": "DeepSeek-R1-Distill-Llama-70B",
     "hf_repo": "deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "source_dtype": "BF16"},
]
