"""Task suites (tier 2): which benchmarks to run, how often, as data in quant/eval/suites/."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

SUITES_DIR = Path(__file__).parent / "suites"
TASKS_DIR = Path(__file__).parent / "tasks"  # bundled lm-eval task definitions
PROMPT_TOKENS = 4096  # room for a question (few-shot examples included) beside the generation budget
DEFAULT_CONTEXT = 4096


@dataclass(frozen=True)
class SuiteTask:
    benchmark: str  # the name shown in reports (the paper's column name)
    lm_eval_task: Optional[str]  # None: no lm-evaluation-harness task exists
    repeats: int = 1
    num_fewshot: Optional[int] = None
    metric: Optional[str] = None  # lm-eval result key such as "exact_match,strip"; None: the first one
    gen_kwargs: Optional[str] = None  # lm-eval --gen_kwargs, e.g. "temperature=0.6,top_p=0.95"
    unsafe_code: bool = False  # the task executes model-written code (MBPP)
    note: str = ""
    # Reasoning-model evaluation, as the study ran it: the prompt through the model's chat template
    # (/v1/chat/completions, lm-eval --apply_chat_template), <think>…</think> stripped before scoring
    # (quant/eval/reasoning.py), sampling settings and the generation budget recorded with each score.
    chat: bool = False
    strip_thinking: bool = False
    sampling: Optional[dict] = None  # e.g. {"temperature": 0.6, "top_p": 0.95}; None: the task's own (greedy)
    max_tokens: Optional[int] = None  # lm-eval max_gen_toks; None: the task's own

    def generation_kwargs(self) -> Optional[str]:
        """lm-eval --gen_kwargs from gen_kwargs, sampling and max_tokens (the latter two win)."""
        parts = dict(p.split("=", 1) for p in (self.gen_kwargs or "").split(",") if "=" in p)
        if self.sampling:
            parts.update({k: str(v) for k, v in self.sampling.items()})
            if float(self.sampling.get("temperature", 0)) > 0:
                parts["do_sample"] = "True"
        if self.max_tokens is not None:
            parts["max_gen_toks"] = str(self.max_tokens)
        return ",".join(f"{k}={v}" for k, v in parts.items()) or None

    def recorded_settings(self) -> dict:
        """What a result keeps beside the score, so it can be compared with the study's setup."""
        return {"chat_template": self.chat, "strip_thinking": self.strip_thinking,
                "sampling": dict(self.sampling) if self.sampling else "task default (greedy)",
                "max_tokens": self.max_tokens, "num_fewshot": self.num_fewshot, "repeats": self.repeats,
                "gen_kwargs": self.generation_kwargs()}


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    tasks: tuple[SuiteTask, ...]

    @property
    def benchmarks(self) -> list[str]:
        return [t.benchmark for t in self.tasks]

    def context_needed(self) -> int:
        """Tokens of context one request needs: the largest generation budget plus room for the prompt
        (4096 when no task sets max_tokens). A server slot smaller than this cuts answers short."""
        budgets = [t.max_tokens for t in self.tasks if t.lm_eval_task and t.max_tokens]
        return max(budgets) + PROMPT_TOKENS if budgets else DEFAULT_CONTEXT


class UnknownSuite(ValueError):
    """A suite name that is not one of the bundled suites (never read as a path)."""


def available_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def load_suite(name: str) -> Suite:
    """A bundled suite by name (e.g. "deepseek-paper").

    Only names of quant/eval/suites/*.yaml are accepted: the name comes from API users through
    the registry, so it is looked up in the known set, never joined into a path or opened as one.
    The message is the same for every unknown name, whether or not a file of that name exists.
    """
    known = available_suites()
    if not isinstance(name, str) or name not in known:
        raise UnknownSuite(f"no suite {str(name)[:100]!r}; known suites: {', '.join(known)}")
    return read_suite_file(SUITES_DIR / f"{name}.yaml")


def read_suite_file(path: "str | Path") -> Suite:
    """A suite from a YAML/JSON file the caller chose (local tools and tests, never API input)."""
    path = Path(path)
    data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
    tasks = []
    for entry in data["tasks"]:
        task = SuiteTask(**entry)
        if task.repeats < 1:
            raise ValueError(f"{path}: {task.benchmark}: repeats must be at least 1")
        if task.max_tokens is not None and task.max_tokens < 1:
            raise ValueError(f"{path}: {task.benchmark}: max_tokens must be at least 1")
        tasks.append(task)
    return Suite(name=data["name"], description=data.get("description", ""), tasks=tuple(tasks))
