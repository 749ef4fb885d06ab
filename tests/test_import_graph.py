"""The import graph stays a graph of layers: no cycle, and no import a layer must not make (scripts/import_graph.py)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import import_graph  # noqa: E402  (a script, found through the path above)


def test_the_repository_has_no_cycle_and_no_forbidden_import():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "import_graph.py")], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_it_finds_a_cycle_through_a_lazy_import():
    edges = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a.w": {"a.x"}}
    assert import_graph.cycles(edges) == [["a.x", "a.y", "a.z"]]


def test_it_resolves_relative_and_function_level_imports_and_skips_type_checking_ones():
    modules = {"registry.models": Path("registry/models.py"), "registry.jobs": Path("registry/jobs.py"),
               "workers.tasks": Path("workers/tasks.py")}
    tree = ast.parse("from typing import TYPE_CHECKING\n"
                     "from . import jobs\n"
                     "if TYPE_CHECKING:\n    from workers import tasks\n"
                     "def f():\n    from workers.tasks import quantize\n")
    names = {name for name, _ in import_graph.imported_names(tree, "registry.models", False, modules)}
    assert {"registry.jobs", "workers.tasks"} <= names and "workers" not in names
    assert sum(1 for name, line in import_graph.imported_names(tree, "registry.models", False, modules)
               if name == "workers.tasks" and line == 4) == 0  # the TYPE_CHECKING import is not counted


def test_a_forbidden_import_is_reported(tmp_path, monkeypatch):
    for package, body in {"registry": "from workers import tasks\n", "workers": "", "quant": "import django\n"}.items():
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "m.py").write_text(body)
    (tmp_path / "workers" / "tasks.py").write_text("")
    monkeypatch.setattr(import_graph, "ROOT", tmp_path)
    monkeypatch.setattr(import_graph, "PACKAGES", ("registry", "workers", "quant"))
    found = import_graph.problems()
    assert any(line.startswith("registry/m.py:1: imports workers.tasks") for line in found), found
    assert any(line.startswith("quant/m.py:1: imports django") for line in found), found
