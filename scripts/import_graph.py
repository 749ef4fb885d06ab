"""Check the import graph of the repository: no cycle, and no import a package must not make.

    python scripts/import_graph.py          # exit 1 and say what is wrong, 0 when the graph is clean

Every `import` counts, at module level or inside a function (a lazy import only hides a cycle
from the interpreter), except those under `if TYPE_CHECKING:`. Only the standard library's ast
is used, so it runs without the project's dependencies installed.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("dsq", "registry", "workers", "quant", "kernels", "tests")
# (importing package, imported top-level name): what a layer must never import.
FORBIDDEN = {
    ("registry", "workers"): "the registry reaches workers only through registry.dispatch (task names)",
    ("quant", "django"): "quant/ is a library: no Django",
    ("quant", "registry"): "quant/ is a library: no registry",
    ("quant", "workers"): "quant/ is a library: no workers",
    ("kernels", "django"): "kernels/ is a library: no Django",
    ("kernels", "registry"): "kernels/ is a library: no registry",
    ("kernels", "workers"): "kernels/ is a library: no workers",
    ("kernels", "quant"): "kernels/ sits below quant/",
    ("registry", "tests"): "code never imports tests",
    ("workers", "tests"): "code never imports tests",
    ("quant", "tests"): "code never imports tests",
    ("kernels", "tests"): "code never imports tests",
    ("dsq", "tests"): "code never imports tests",
}


# The project's wiring (settings, the Celery app, log formatting), which every package may read:
# counted apart from the rest of dsq (the command line, the demo, the URL root), which sits above the registry.
WIRING = ("dsq.settings", "dsq.celery", "dsq.logging")


def package_of(module: str) -> str:
    return "dsq wiring" if module in WIRING else module.split(".")[0]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                modules[module_name(path)] = path
    return modules


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(tree: ast.AST, module: str, is_package: bool, modules: "dict[str, Path]") -> list[tuple[str, int]]:
    """(dotted name, line) of every import in a module, relative imports resolved.

    `from pkg import sub` names the module pkg.sub when there is one (the package itself is
    loaded by any import of its modules and is not counted), else pkg."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[:len(here) - (node.level - 1)]
                base = ".".join([*here, base] if base else here)
            names = [f"{base}.{alias.name}" for alias in node.names]
            submodules = [n for n in names if n in modules]
            found.extend((n, node.lineno) for n in submodules)
            if len(submodules) < len(names):
                found.append((base, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def graph(modules: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    """Edges between the repository's modules, and the forbidden imports found."""
    edges: dict[str, set[str]] = {name: set() for name in modules}
    forbidden = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for target, line in imported_names(tree, name, path.name == "__init__.py", modules):
            top = target.split(".")[0]
            why = FORBIDDEN.get((name.split(".")[0], top))
            if why:
                forbidden.append(f"{path.relative_to(ROOT)}:{line}: imports {target} ({why})")
            if target in modules and target != name:
                edges[name].add(target)
    return edges, sorted(set(forbidden))


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            connect(v)
    return sorted(found)


def package_edges(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same graph between packages (tests excluded: they may import anything)."""
    out: dict[str, set[str]] = {package_of(m): set() for m in edges if package_of(m) != "tests"}
    for a, targets in edges.items():
        pa = package_of(a)
        if pa == "tests":
            continue
        out[pa] |= {package_of(b) for b in targets if package_of(b) not in (pa, "tests")}
    return out


def problems() -> list[str]:
    edges, found = graph(find_modules())
    found += [f"import cycle between packages: {' <-> '.join(c)}" for c in cycles(package_edges(edges))]
    found += [f"import cycle: {' <-> '.join(c)}" for c in cycles(edges)]
    return found


def main() -> int:
    found = problems()
    for line in found:
        print(line)
    if not found:
        print(f"import graph clean: {len(find_modules())} modules, no cycle, no forbidden import")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
