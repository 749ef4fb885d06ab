"""Run a task suite with EleutherAI's lm-evaluation-harness against an OpenAI-compatible server.

Each (task, repeat) is one `python -m lm_eval` process, so a cancel can stop it mid-run
and one failing task does not take the others down. lm_eval runs with its working
directory in quant/eval/tasks/ so that bundled tasks find their data files there.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from quant.progress import Reporter, check_cancelled, report
from quant.eval.server import Endpoint
from quant.eval.suites import TASKS_DIR, Suite, SuiteTask


@dataclass(frozen=True)
class BenchmarkScore:
    benchmark: str
    lm_eval_task: Optional[str]
    metric: str
    runs: tuple[float, ...]  # percent, one per repeat

    @property
    def mean(self) -> float:
        return statistics.fmean(self.runs)

    @property
    def std(self) -> Optional[float]:
        """Sample standard deviation over repeats; None for a single run (as the paper prints)."""
        return statistics.stdev(self.runs) if len(self.runs) > 1 else None

    def as_dict(self) -> dict:
        return {"benchmark": self.benchmark, "lm_eval_task": self.lm_eval_task, "metric": self.metric,
                "runs": list(self.runs), "mean": self.mean, "std": self.std}


@dataclass
class SuiteResult:
    suite: str
    scores: list[BenchmarkScore] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # benchmark -> why

    def as_dict(self) -> dict:
        return {"suite": self.suite, "scores": [s.as_dict() for s in self.scores], "skipped": self.skipped}


def lm_eval_command(task: SuiteTask, endpoint: Endpoint, output_dir: Path, seed: int,
                    limit: Optional[int]) -> list[str]:
    model_args = (f"model={endpoint.model},base_url={endpoint.completions_url},"
                  "tokenizer_backend=none,tokenized_requests=False,num_concurrent=1,max_retries=3")
    command = [sys.executable, "-m", "lm_eval", "--model", "local-completions", "--model_args", model_args,
               "--tasks", task.lm_eval_task, "--include_path", str(TASKS_DIR),
               "--output_path", str(output_dir), "--seed", f"{seed},{seed},{seed},{seed}"]
    if task.num_fewshot is not None:
        command += ["--num_fewshot", str(task.num_fewshot)]
    if task.gen_kwargs:
        command += ["--gen_kwargs", task.gen_kwargs]
    if task.unsafe_code:
        command += ["--confirm_run_unsafe_code"]
    if limit is not None:
        command += ["--limit", str(limit)]
    return command


def read_score(output_dir: Path, task: SuiteTask) -> tuple[str, float]:
    """(metric name, score in percent) from the results_*.json lm_eval wrote."""
    files = sorted(output_dir.rglob("results_*.json"))
    if not files:
        raise RuntimeError(f"lm_eval wrote no results under {output_dir}")
    results = json.loads(files[-1].read_text())["results"][task.lm_eval_task]
    metrics = [k for k in results if "," in k and "_stderr" not in k]
    metric = task.metric or metrics[0]
    return metric, 100.0 * float(results[metric])


def run_once(command: list[str], log_path: Path, offline: bool, reporter: "Reporter | None") -> None:
    env = dict(os.environ)
    if offline:
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=TASKS_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while process.poll() is None:
                check_cancelled(reporter, "evaluation cancelled during lm_eval")
                time.sleep(0.5)
        finally:
            if process.poll() is None:
                process.terminate()
                process.wait()
    if process.returncode != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"lm_eval exited with {process.returncode}; log {log_path}:\n{tail}")


def run_suite(
    suite: Suite,
    endpoint: Endpoint,
    work_dir: "str | Path",
    limit: Optional[int] = None,
    offline: bool = False,
    base_seed: int = 1234,
    reporter: "Reporter | None" = None,
) -> SuiteResult:
    """Every task `repeats` times (seed base_seed + repeat); mean ± std per benchmark."""
    work_dir = Path(work_dir)
    result = SuiteResult(suite=suite.name)
    runnable = [t for t in suite.tasks if t.lm_eval_task]
    total = sum(t.repeats for t in runnable)
    done = 0
    for task in suite.tasks:
        if not task.lm_eval_task:
            result.skipped[task.benchmark] = task.note or "no lm-evaluation-harness task"
            continue
        runs, metric = [], ""
        for repeat in range(task.repeats):
            check_cancelled(reporter, f"evaluation cancelled during {task.benchmark} run {repeat + 1}")
            out = work_dir / task.lm_eval_task / f"run{repeat + 1}"
            out.mkdir(parents=True, exist_ok=True)
            run_once(lm_eval_command(task, endpoint, out, base_seed + repeat, limit),
                     out / "lm_eval.log", offline, reporter)
            metric, score = read_score(out, task)
            runs.append(score)
            done += 1
            report(reporter, "benchmarks", done / total, f"{task.benchmark} run {repeat + 1}: {score:.2f}",
                   index=done, count=total)
        result.scores.append(BenchmarkScore(task.benchmark, task.lm_eval_task, metric, tuple(runs)))
    return result
