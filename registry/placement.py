"""Where a benchmark job runs: on one GPU, or on a whole host (all its GPUs), decided from quant.fit.

One-GPU workers (queue `gpu`) take the variants that fit one GPU of DSQ_GPU_BYTES with the job's
context; the others go to the `host` queue, whose workers (DSQ_WORKER_SCOPE=host) own every GPU of
their machine and ask the same question of their own GPUs before they claim a job
(workers.context). The 671B variants are host jobs: DeepSeek-R1 DQ3_K_M needs 4 × 80 GB and Q8_0 11 (more than one 8-GPU host of H100s: it waits, saying so).
The context is the KV cache the server allocates: n_ctx per slot × parallel slots, flash attention on
(llama-server runs with it on GPUs, quant.eval.llama_server.settings_for).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from django.conf import settings

from quant import fit as quant_fit
from quant import recipes as quant_recipes
from registry.evidence import plan_of
from registry.models import Variant

GPU, HOST = "gpu", "host"
DEFAULT_N_CTX = 4096


def variant_tensors(variant: Variant) -> list[tuple[str, int]]:
    """Per-tensor bytes: the variant's stored plan, else the recipe's plan, else its size spread by parameters."""
    planned = plan_of(variant).tensor_bytes()
    if planned:
        return planned
    try:
        return quant_fit.tensor_bytes(variant.checkpoint.config, variant.recipe.parsed())
    except (quant_recipes.RecipeError, KeyError, ValueError):
        return quant_fit.tensor_bytes_from_total(variant.checkpoint.config, variant.total_bytes)


def context_of(options: "dict | None", suite: "str | None" = None) -> int:
    """Tokens of KV cache a benchmark's server holds: context per slot × slots. The context per slot is
    options["n_ctx"], else what the suite's generation budget needs (quant.eval.suites)."""
    from quant.eval.suites import UnknownSuite, load_suite

    options = options or {}
    default = DEFAULT_N_CTX
    if suite:
        try:
            default = load_suite(suite).context_needed()
        except UnknownSuite:
            pass
    return int(options.get("n_ctx", default)) * int(options.get("parallel", 1))


@dataclass(frozen=True)
class Need:
    """The smallest number of GPUs of `gpu_bytes` that hold the variant (None: not even MAX_GPUS)."""

    gpus: Optional[int]
    gpu_bytes: int

    def describe(self) -> str:
        size = f"{self.gpu_bytes / 2**30:.0f} GiB"
        return f"needs {self.gpus}×{size}" if self.gpus else f"does not fit {quant_fit.MAX_GPUS}×{size}"


def gpus_needed(variant: Variant, gpu_bytes: int, context: int, max_gpus: int = quant_fit.MAX_GPUS) -> Need:
    """quant.fit for 1, 2, … max_gpus GPUs of `gpu_bytes`, every layer offloaded; the first that fits.

    A variant whose checkpoint has no config that quant.fit can read is taken to fit one GPU (nothing
    to size it by: the worker's own memory check still applies)."""
    try:
        config, tensors = variant.checkpoint.config, variant_tensors(variant)
        for n in range(1, max_gpus + 1):
            hardware = quant_fit.Hardware(f"custom:{n}x{gpu_bytes}", n, gpu_bytes)
            if quant_fit.fit(config, tensors, hardware, context, flash_attn=True).fits:
                return Need(n, gpu_bytes)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return Need(1, gpu_bytes)
    return Need(None, gpu_bytes)


def queue_for(variant: Variant, options: "dict | None" = None, suite: "str | None" = None) -> str:
    """`gpu` when the variant fits one GPU of DSQ_GPU_BYTES with the suite's context, else `host`."""
    need = gpus_needed(variant, settings.DSQ_GPU_BYTES, context_of(options, suite), max_gpus=1)
    return GPU if need.gpus == 1 else HOST
