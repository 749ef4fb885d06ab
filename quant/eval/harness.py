"""Run a task suite with EleutherAI's lm-evaluation-harness against an OpenAI-compatible server.

Each (task, repeat) is one `python -m lm_eval` process, so a cancel can stop it mid-run
and one failing task does not take the others down. lm_eval runs with its working
directory in quant/eval/tasks/ so that bundled tasks find their data files there.

Every run talks to the server through the reasoning relay (quant/eval/reasoning.py), which strips
`<think>…</think>` when the task asks for it and writes each raw output to `outputs.jsonl`; lm_eval
writes what it scored per question (`--log_samples`, samples_*.jsonl) beside it. Repeat k sends seed
base_seed + k with every request, so sampled runs differ and a rerun repeats them.
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
from quant.eval.reasoning import relay
from quant.eval.server import Endpoint
from quant.eval.suites import TASKS_DIR, Suite, SuiteTask

# One request of a reasoning model can generate 32k tokens: lm-eval's 300 s default is far too short.
REQUEST_TIMEOUT_S = 6 * 3600


@dataclass(frozen=True)
class BenchmarkScore:
    benchmark: str
    lm_eval_task: Optional[str]
    metric: str
    runs: tuple[float, ...]  # percent, one per repeat
    settings: dict = field(default_factory=dict)  # SuiteTask.recorded_settings(): template, sampling, budget
    outputs: tuple[dict, ...] = ()  # per repeat: seed, the samples and raw-output files, how many questions

    @property
    def mean(self) -> float:
        return statistics.fmean(self.runs)

    @property
    def std(self) -> Optional[float]:
        """Sample standard deviation over repeats; None for a single run (as the paper prints)."""
        return statistics.stdev(self.runs) if len(self.runs) > 1 else None

    def as_dict(self) -> dict:
        return {"benchmark": self.benchmark, "lm_eval_task": self.lm_eval_task, "metric": self.metric,
                "runs": list(self.runs), "mean": self.mean, "std": self.std, "settings": self.settings,
                "outputs": list(self.outputs)}


@dataclass
class SuiteResult:
    suite: str
    scores: list[BenchmarkScore] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # benchmark -> why

    def as_dict(self) -> dict:
        return {"suite": self.suite, "scores": [s.as_dict() for s in self.scores], "skipped": self.skipped}


def lm_eval_command(task: SuiteTask, endpoint: Endpoint, output_dir: Path, seed: int,
                    limit: Optional[int], concurrency: int = 1) -> list[str]:
    """One lm_eval run; chat tasks go through the server's chat template (/v1/chat/completions).

    concurrency: requests in flight at once (the server's parallel slots)."""
    model, url = (("local-chat-completions", endpoint.chat_completions_url) if task.chat
                  else ("local-completions", endpoint.completions_url))
    model_args = (f"model={endpoint.model},base_url={url},tokenizer_backend=none,tokenized_requests=False,"
                  f"num_concurrent={concurrency},max_retries=3,seed={seed},timeout={REQUEST_TIMEOUT_S}")
    command = [sys.executable, "-m", "lm_eval", "--model", model, "--model_args", model_args,
               "--tasks", task.lm_eval_task, "--include_path", str(TASKS_DIR),
               "--output_path", str(output_dir), "--seed", f"{seed},{seed},{seed},{seed}", "--log_samples"]
    if task.chat:
        command += ["--apply_chat_template"]
    if task.num_fewshot is not None:
        command += ["--num_fewshot", str(task.num_fewshot)]
    if task.generation_kwargs():
        command += ["--gen_kwargs", task.generation_kwargs()]
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


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def run_outputs(out: Path, work_dir: Path, seed: int) -> dict:
    """Where one run's per-question outputs are (paths relative to work_dir), for an audit."""
    samples = sorted(out.rglob("samples_*.jsonl"))
    raw = out / "outputs.jsonl"
    return {"seed": seed, "samples": [str(p.relative_to(work_dir)) for p in samples],
            "raw_outputs": str(raw.relative_to(work_dir)) if raw.exists() else None,
            "n_samples": sum(count_lines(p) for p in samples),
            "n_requests": count_lines(raw) if raw.exists() else 0}


def run_suite(
    suite: Suite,
    endpoint: Endpoint,
    work_dir: "str | Path",
    limit: Optional[int] = None,
    offline: bool = False,
    base_seed: int = 1234,
    reporter: "Reporter | None" = None,
    concurrency: int = 1,
) -> SuiteResult:
    """Every task `repeats` times (seed base_seed + repeat); mean ± std per benchmark.

    work_dir keeps each run's lm_eval results, scored samples and raw outputs: keep it to audit a score."""
    work_dir = Path(work_dir)
    result = SuiteResult(suite=suite.name)
    runnable = [t for t in suite.tasks if t.lm_eval_task]
    total = sum(t.repeats for t in runnable)
    done = 0
    for task in suite.tasks:
        if not task.lm_eval_task:
            result.skipped[task.benchmark] = task.note or "no lm-evaluation-harness task"
            continue
        runs, outputs, metric = [], [], ""
        for repeat in range(task.repeats):
            check_cancelled(reporter, f"evaluation cancelled during {task.benchmark} run {repeat + 1}")
            out = work_dir / task.lm_eval_task / f"run{repeat + 1}"
            out.mkdir(parents=True, exist_ok=True)
            seed = base_seed + repeat
            with relay(endpoint, out / "outputs.jsonl", strip=task.strip_thinking) as relayed:
                run_once(lm_eval_command(task, relayed, out, seed, limit, concurrency),
                         out / "lm_eval.log", offline, reporter)
            metric, score = read_score(out, task)
            runs.append(score)
            outputs.append(run_outputs(out, work_dir, seed))
            done += 1
            report(reporter, "benchmarks", done / total, f"{task.benchmark} run {repeat + 1}: {score:.2f}",
                   index=done, count=total)
        result.scores.append(BenchmarkScore(task.benchmark, task.lm_eval_task, metric, tuple(runs),
                                            task.recorded_settings(), tuple(outputs)))
    return result
