"""Task suites (tier 2): which benchmarks to run, how often, as data in quant/eval/suites/."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

SUITES_DIR = Path(__file__).parent / "suites"
TASKS_DIR = Path(__file__).parent / "tasks"  # bundled lm-eval task definitions


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


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    tasks: tuple[SuiteTask, ...]

    @property
    def benchmarks(self) -> list[str]:
        return [t.benchmark for t in self.tasks]


def available_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def load_suite(name_or_path: "str | Path") -> Suite:
    """A bundled suite by name (e.g. "deepseek-paper") or any suite YAML/JSON file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no suite {name_or_path!r}; bundled: {', '.join(available_suites())}")
    data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
    tasks = []
    for entry in data["tasks"]:
        task = SuiteTask(**entry)
        if task.repeats < 1:
            raise ValueError(f"{path}: {task.benchmark}: repeats must be at least 1")
        tasks.append(task)
    return Suite(name=data["name"], description=data.get("description", ""), tasks=tuple(tasks))
