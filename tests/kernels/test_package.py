"""kernels/ as a whole: each room imports only what HACKING.md's table of kernels/ allows."""
from __future__ import annotations

import ast
import pathlib

import kernels

ROOT = pathlib.Path(kernels.__file__).parent
CODEC_MODULES = {"kernels.floats", "kernels.legacy", "kernels.mxfp4", "kernels.q2_k", "kernels.q3_k", "kernels.q45_k", "kernels.q6_k"}
SEARCHES = {"kernels.search", "kernels.search.qkx", "kernels.search.qx", "kernels.search.q3", "kernels.search.qp"}
BASE = {"kernels.types", "kernels.arith", "kernels.blocks"}
TRITON_COMMON = {"kernels.triton.common", "kernels.triton.groups"}
TRITON_SEARCHES = {"kernels.triton.search", "kernels.triton.qx", "kernels.triton.qkx", "kernels.triton.q3", "kernels.triton.qp"}
TRITON_CODECS = {"kernels.triton.legacy", "kernels.triton.q2_k", "kernels.triton.q3_k", "kernels.triton.q45_k",
                 "kernels.triton.q6_k"}

# module -> the kernels modules it may import (HACKING.md, "kernels/ rooms")
ALLOWED: dict[str, set[str]] = {
    "kernels.types": set(),
    "kernels.arith": set(),
    "kernels.blocks": set(),
    "kernels.aot": set(),
    "kernels.native": {"kernels.aot"},
    "kernels.fused": {"kernels.blocks", "kernels.aot"},
    **{m: {"kernels.arith", "kernels.blocks", "kernels.fused", "kernels.native"} for m in SEARCHES},
    **{m: BASE | {"kernels.fused"} | SEARCHES for m in CODEC_MODULES},
    "kernels.codecs": CODEC_MODULES,
    "kernels.triton.common": set(),
    "kernels.triton.groups": {"kernels.triton.common", "kernels.types"},
    **{m: {"kernels.triton.common"} | TRITON_SEARCHES for m in TRITON_SEARCHES},
    **{m: TRITON_COMMON | TRITON_SEARCHES | {"kernels.types"} for m in TRITON_CODECS},
    "kernels.triton": TRITON_CODECS | {"kernels.triton.common"},
    "kernels.api": {"kernels.codecs", "kernels.fused", "kernels.types", "kernels.triton"},
    "kernels": {"kernels.api", "kernels.types"},
    "kernels.aot_build": {"kernels.aot", "kernels.fused", "kernels.codecs"},  # a command: builds every package
}


def _module(path: pathlib.Path) -> str:
    parts = ("kernels",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> "set[str]":
    """Top-level names of everything path imports, and the kernels modules by full name."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "kernels" or node.module == "kernels.search":
                found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_every_module_is_in_the_table():
    assert {_module(p) for p in ROOT.rglob("*.py")} == set(ALLOWED)


def test_rooms_import_only_what_the_table_allows():
    for path in ROOT.rglob("*.py"):
        name = _module(path)
        imported = _imports(path)
        inside = {m for m in imported if m == "kernels" or m.startswith("kernels.")}
        inside = {m for m in inside if m in ALLOWED}  # `from kernels import fused` adds kernels itself
        assert inside - {"kernels"} <= ALLOWED[name], (name, sorted(inside - {"kernels"} - ALLOWED[name]))
        outside = {m.split(".")[0] for m in imported} & {"django", "registry", "workers", "quant", "dsq", "benchmarks"}
        assert not outside, (name, outside)
