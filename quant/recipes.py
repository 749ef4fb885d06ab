"""Quantization recipes as data: which GGML type each GGUF tensor gets.

A recipe is a name, a version, a default type, an ordered list of rules and a
fallback table. Each rule is ``{"match": <regex searched in the GGUF tensor
name>, "when": {<conditions>}, "type": <GGML type>}``; the first rule whose
pattern and conditions hold decides, otherwise the default type applies. The
chosen type is then checked against the row length (the last PyTorch dim,
ggml's ne[0]): a type whose block does not divide it is replaced through the
fallback table, and by F16 when even that does not divide (llama-quant.cpp,
``tensor_type_fallback``).

Conditions are a small fixed vocabulary, so a recipe never needs code:

* ``"layers"``: a named layer set (``"use_more_bits"``) or an explicit list of
  block indices;
* ``"layer_lt"`` / ``"layer_ge"``: an integer expression over ``n_layer``
  (``"n_layer/16"``, ``"7*n_layer/8"``; ``/`` and ``%`` truncate as in C,
  ``max``/``min`` allowed);
* ``"layers_spread"``: ``{"count", "first", "last"}`` expressions; ``count``
  block indices spread evenly from ``first`` to ``last`` inclusive;
* ``"model"``: a named model predicate (``"tied_embeddings"``,
  ``"gqa_ge_4"``, ``"llama_70b"``, ``"n_expert_8"``, ``"deepseek32"``), evaluated on
  :class:`ModelFacts`.

Layer conditions read the block index from the name (``blk.N.``); a tensor
outside any block never satisfies one. llama.cpp counts attn_v and dense
ffn_down tensors with running counters over its layer-sorted tensor list;
for the architectures served here (one such tensor per block) the counter
equals the block index, and for MoE models llama.cpp itself parses the index
from the name, so every ``ffn_down`` tensor (dense, ``_exps``, ``_shexp``)
follows the ffn_down rule with its own block index.

Tensors llama.cpp never quantizes (1-D tensors, norms, names not ending in
``weight``, the MoE router ``ffn_gate_inp``, DeepSeek-V4's token-id routing
table ``ffn_gate_tid2eid``) keep the converter's type (F32, or what
quant.architectures.kept_type names) whatever the rules say: that is a property of the file format's readers, not
of a recipe.

A recipe may ``"extends"`` a built-in: its rules go before the base's, and
default type and fallbacks are inherited unless given. The hash covers the
resolved recipe, so a variant records exactly what made it.
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import gguf

#: Types a recipe may name: those the kernels package can write.
SUPPORTED_TYPES: tuple[str, ...] = (
    "F32", "F16", "BF16",
    "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
    "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
    "MXFP4",  # MXFP4_MOE's expert type (block 32 -> 17 bytes)
)

#: Types a recipe may name and the planner sizes, but kernels/ cannot write yet: a conversion that
#: meets one fails in kernels (no codec). None since kernels/mxfp4.py.
PLAN_ONLY_TYPES: tuple[str, ...] = ()

#: llama-quant.cpp ``tensor_type_fallback``: the 256-block K-quants demote to a
#: 32-block type; a 32-block type that does not fit becomes F16.
DEFAULT_FALLBACKS: dict[str, str] = {
    "Q2_K": "Q4_0",
    "Q3_K": "Q4_0",
    "Q4_K": "Q5_0",
    "Q5_K": "Q5_1",
    "Q6_K": "Q8_0",
}

#: Source type of tensors llama.cpp never quantizes (the converter writes them F32).
UNQUANTIZED_TYPE = "F32"

_BLK = re.compile(r"^blk\.(\d+)\.")
_RULE_KEYS = {"match", "type", "when", "note"}
_RECIPE_KEYS = {"name", "version", "description", "default_type", "rules", "fallbacks", "extends"}


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the offending field."""


@dataclass(frozen=True)
class ModelFacts:
    """What model-level rule conditions may ask about (from config.json)."""

    arch: str | None = None
    n_head: int | None = None
    n_head_kv: int | None = None
    n_expert: int = 0
    tied_embeddings: bool = False


def block_size(qtype: str) -> int:
    """Weights per block of a GGML type (1 for float types)."""
    return gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[qtype]][0]


def row_nbytes(qtype: str, n_per_row: int) -> int:
    """Bytes of one row of n_per_row weights in qtype."""
    bs, ts = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[qtype]]
    if n_per_row % bs:
        raise ValueError(f"row length {n_per_row} is not a multiple of {qtype}'s block size {bs}")
    return n_per_row // bs * ts


def is_quantizable(name: str, shape: tuple[int, ...]) -> bool:
    """llama-quant.cpp ``tensor_allows_quantization`` for the tensors our architectures have."""
    return (
        len(shape) >= 2
        and name.endswith("weight")
        and "_norm.weight" not in name
        and "ffn_gate_inp.weight" not in name
        and "ffn_gate_tid2eid.weight" not in name
    )


def block_index(name: str) -> int | None:
    """Block (layer) index of a GGUF tensor name (``blk.N.``), None outside blocks."""
    m = _BLK.match(name)
    return int(m.group(1)) if m else None


# -- integer expressions over n_layer ---------------------------------------------------------


def _c_div(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError("division by zero")
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _c_mod(a: int, b: int) -> int:
    return a - _c_div(a, b) * b


_BINOPS: dict[type, Callable[[int, int], int]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: _c_div,
    ast.FloorDiv: _c_div,
    ast.Mod: _c_mod,
}
_FUNCS: dict[str, Callable[..., int]] = {"max": max, "min": min}


@dataclass(frozen=True)
class Expr:
    """An integer expression over ``n_layer``, with C's truncating ``/`` and ``%``."""

    source: str
    tree: ast.AST = field(compare=False, repr=False)

    @classmethod
    def parse(cls, value: Any, where: str) -> "Expr":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise RecipeError(f"{where}: expected an integer or an expression over n_layer, got {value!r}")
        source = str(value)
        try:
            tree = ast.parse(source, mode="eval").body
        except SyntaxError:
            raise RecipeError(f"{where}: {source!r} is not a valid expression") from None
        for node in ast.walk(tree):
            ok = isinstance(node, (ast.BinOp, ast.UnaryOp, ast.USub, ast.Load, ast.Call)) or type(node) in _BINOPS
            ok = ok or (isinstance(node, ast.Constant) and type(node.value) is int)
            ok = ok or (isinstance(node, ast.Name) and (node.id == "n_layer" or node.id in _FUNCS))
            if isinstance(node, ast.Call):
                ok = isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords
            if not ok:
                raise RecipeError(
                    f"{where}: {source!r} may only use integers, n_layer, + - * / %, max() and min()"
                )
        expr = cls(source, tree)
        try:
            expr(61)
        except ZeroDivisionError:
            raise RecipeError(f"{where}: {source!r} divides by zero") from None
        return expr

    def __call__(self, n_layer: int) -> int:
        return self._eval(self.tree, n_layer)

    def _eval(self, node: ast.AST, n: int) -> int:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return n
        if isinstance(node, ast.UnaryOp):
            return -self._eval(node.operand, n)
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](self._eval(node.left, n), self._eval(node.right, n))
        assert isinstance(node, ast.Call)
        return _FUNCS[node.func.id](*(self._eval(a, n) for a in node.args))


# -- named sets and predicates ----------------------------------------------------------------


def use_more_bits(i: int, n: int) -> bool:
    """llama-quant.cpp: the first and last eighth of the layers, and every third in between."""
    return i < _c_div(n, 8) or i >= _c_div(7 * n, 8) or _c_mod(i - _c_div(n, 8), 3) == 2


NAMED_LAYER_SETS: dict[str, Callable[[int, int], bool]] = {"use_more_bits": use_more_bits}


def _need(facts: ModelFacts, attr: str, predicate: str) -> Any:
    value = getattr(facts, attr)
    if value is None:
        raise RecipeError(f"model condition {predicate!r} needs ModelFacts.{attr}; pass model=ModelFacts(...)")
    return value


def _gqa_ge_4(f: ModelFacts, n_layer: int) -> bool:
    return _need(f, "n_head", "gqa_ge_4") // max(1, _need(f, "n_head_kv", "gqa_ge_4")) >= 4


def _llama_70b(f: ModelFacts, n_layer: int) -> bool:
    # llama.cpp gives LLM_TYPE_70B to an 80-layer llama with GQA; only then are attn_v bumped.
    if n_layer != 80:
        return False
    return (
        _need(f, "arch", "llama_70b") == "llama"
        and _need(f, "n_head", "llama_70b") != _need(f, "n_head_kv", "llama_70b")
    )


NAMED_MODEL_PREDICATES: dict[str, Callable[[ModelFacts, int], bool]] = {
    "tied_embeddings": lambda f, n: f.tied_embeddings,
    # llama.cpp keys several rules on `hparams.n_expert == 8` (written for Mixtral), for every architecture
    "n_expert_8": lambda f, n: f.n_expert == 8,
    "gqa_ge_4": _gqa_ge_4,
    "llama_70b": _llama_70b,
    # convert_hf_to_gguf keeps V3.2's indexer.proj F32 in its float files (V4's keeps its stored type)
    "deepseek32": lambda f, n: _need(f, "arch", "deepseek32") == "deepseek32",
}


# -- conditions and rules ---------------------------------------------------------------------


def _spread(count: int, first: int, last: int) -> frozenset[int]:
    if count <= 0:
        return frozenset()
    if count == 1:
        return frozenset({first})
    span = last - first
    return frozenset(first + _c_div(m * span + (count - 1) // 2, count - 1) for m in range(count))


@dataclass(frozen=True)
class Condition:
    """The parsed ``when`` object of a rule; every key present must hold."""

    data: Mapping[str, Any]
    checks: tuple[Callable[[int | None, int, ModelFacts], bool], ...] = field(compare=False, repr=False)

    @classmethod
    def parse(cls, when: Any, where: str) -> "Condition":
        if not isinstance(when, dict):
            raise RecipeError(f"{where}: 'when' must be an object, got {type(when).__name__}")
        checks: list[Callable[[int | None, int, ModelFacts], bool]] = []
        for key, value in when.items():
            at = f"{where}.{key}"
            if key == "layers":
                checks.append(_layers_check(value, at))
            elif key in ("layer_lt", "layer_ge"):
                expr = Expr.parse(value, at)
                if key == "layer_lt":
                    checks.append(lambda i, n, f, e=expr: i is not None and i < e(n))
                else:
                    checks.append(lambda i, n, f, e=expr: i is not None and i >= e(n))
            elif key == "layers_spread":
                if not isinstance(value, dict) or set(value) != {"count", "first", "last"}:
                    raise RecipeError(f"{at}: expected an object with exactly 'count', 'first' and 'last'")
                c, a, b = (Expr.parse(value[k], f"{at}.{k}") for k in ("count", "first", "last"))
                checks.append(lambda i, n, f, c=c, a=a, b=b: i is not None and i in _spread(c(n), a(n), b(n)))
            elif key == "model":
                if value not in NAMED_MODEL_PREDICATES:
                    raise RecipeError(
                        f"{at}: unknown model predicate {value!r}; known: {', '.join(sorted(NAMED_MODEL_PREDICATES))}"
                    )
                pred = NAMED_MODEL_PREDICATES[value]
                checks.append(lambda i, n, f, p=pred: p(f, n))
            else:
                raise RecipeError(
                    f"{where}: unknown condition {key!r}; known: layers, layer_lt, layer_ge, layers_spread, model"
                )
        return cls(dict(when), tuple(checks))

    def holds(self, layer: int | None, n_layer: int, facts: ModelFacts) -> bool:
        return all(check(layer, n_layer, facts) for check in self.checks)


def _layers_check(value: Any, at: str) -> Callable[[int | None, int, ModelFacts], bool]:
    if isinstance(value, str):
        if value not in NAMED_LAYER_SETS:
            raise RecipeError(f"{at}: unknown layer set {value!r}; known: {', '.join(sorted(NAMED_LAYER_SETS))}")
        named = NAMED_LAYER_SETS[value]
        return lambda i, n, f: i is not None and named(i, n)
    if isinstance(value, list) and all(type(v) is int and v >= 0 for v in value):
        members = frozenset(value)
        return lambda i, n, f: i in members
    raise RecipeError(f"{at}: expected a layer-set name or a list of non-negative block indices, got {value!r}")


def _check_type(value: Any, where: str) -> str:
    known = SUPPORTED_TYPES + PLAN_ONLY_TYPES
    if not isinstance(value, str) or value.upper() not in known:
        raise RecipeError(f"{where}: unknown GGML type {value!r}; supported: {', '.join(known)}")
    return value.upper()


@dataclass(frozen=True)
class Rule:
    match: str
    type: str
    when: Condition | None = None
    note: str = ""
    pattern: re.Pattern = field(compare=False, repr=False, default=None)  # type: ignore[assignment]

    @classmethod
    def parse(cls, raw: Any, where: str) -> "Rule":
        if not isinstance(raw, dict):
            raise RecipeError(f"{where}: a rule must be an object, got {type(raw).__name__}")
        unknown = set(raw) - _RULE_KEYS
        if unknown:
            raise RecipeError(f"{where}: unknown field(s) {sorted(unknown)}; a rule has {sorted(_RULE_KEYS)}")
        for key in ("match", "type"):
            if key not in raw:
                raise RecipeError(f"{where}: missing {key!r}")
        if not isinstance(raw["match"], str) or not raw["match"]:
            raise RecipeError(f"{where}.match: expected a non-empty regular expression string")
        try:
            pattern = re.compile(raw["match"])
        except re.error as e:
            raise RecipeError(f"{where}.match: invalid regular expression {raw['match']!r}: {e}") from None
        when = Condition.parse(raw["when"], f"{where}.when") if "when" in raw else None
        return cls(raw["match"], _check_type(raw["type"], f"{where}.type"), when, str(raw.get("note", "")), pattern)

    def applies(self, name: str, layer: int | None, n_layer: int, facts: ModelFacts) -> bool:
        return self.pattern.search(name) is not None and (self.when is None or self.when.holds(layer, n_layer, facts))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"match": self.match}
        if self.when is not None:
            d["when"] = dict(self.when.data)
        d["type"] = self.type
        return d


# -- recipes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    name: str
    version: int
    default_type: str
    rules: tuple[Rule, ...]
    fallbacks: Mapping[str, str]
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The canonical (resolved) form: what the hash covers. The description is left out."""
        return {
            "name": self.name,
            "version": self.version,
            "default_type": self.default_type,
            "rules": [r.to_dict() for r in self.rules],
            "fallbacks": dict(sorted(self.fallbacks.items())),
        }

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def chosen_type(self, name: str, n_layer: int, model: ModelFacts | None = None) -> str:
        """The type the rules pick for a quantizable tensor, before the row-length fallback."""
        facts = model or ModelFacts()
        layer = block_index(name)
        for rule in self.rules:
            if rule.applies(name, layer, n_layer, facts):
                return rule.type
        return self.default_type

    def fallback(self, qtype: str, row: int) -> str:
        """llama-quant.cpp ``tensor_type_fallback``: a type whose block does not divide the row."""
        bs = block_size(qtype)
        if row % bs == 0:
            return qtype
        demoted = self.fallbacks.get(qtype)
        if demoted is None:
            if bs > 32:
                raise RecipeError(f"recipe {self.name!r}: no fallback for {qtype} (row length {row})")
            demoted = qtype
        return demoted if row % block_size(demoted) == 0 else "F16"

    def tensor_type(
        self, name: str, shape: tuple[int, ...], n_layer: int, model: ModelFacts | None = None
    ) -> str:
        """GGML type name for a GGUF tensor; shape in PyTorch order (last dim = row length)."""
        if not is_quantizable(name, tuple(shape)):
            return UNQUANTIZED_TYPE
        return self.fallback(self.chosen_type(name, n_layer, model), int(shape[-1]))


def parse_recipe(data: Mapping[str, Any]) -> Recipe:
    """Validate a recipe dict (as read from JSON) and resolve ``extends``."""
    if not isinstance(data, Mapping):
        raise RecipeError(f"a recipe must be a JSON object, got {type(data).__name__}")
    unknown = set(data) - _RECIPE_KEYS
    if unknown:
        raise RecipeError(f"unknown field(s) {sorted(unknown)}; a recipe has {sorted(_RECIPE_KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}", name):
        raise RecipeError(f"name: expected 1-64 characters of letters, digits and _.+- , got {name!r}")
    version = data.get("version", 1)
    if type(version) is not int or version < 1:
        raise RecipeError(f"version: expected a positive integer, got {version!r}")
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        raise RecipeError("rules: expected a list of rule objects")
    rules = tuple(Rule.parse(r, f"rules[{i}]") for i, r in enumerate(raw_rules))

    base: Recipe | None = None
    if "extends" in data:
        if data["extends"] not in _builtin_data():
            raise RecipeError(f"extends: unknown built-in recipe {data['extends']!r}; known: {', '.join(builtin_names())}")
        base = get_recipe(data["extends"])
        rules = rules + base.rules

    if "default_type" in data:
        default_type = _check_type(data["default_type"], "default_type")
    elif base is not None:
        default_type = base.default_type
    else:
        raise RecipeError("missing 'default_type' (or 'extends' a built-in recipe)")

    fallbacks = dict(base.fallbacks) if base is not None else dict(DEFAULT_FALLBACKS)
    if "fallbacks" in data:
        if not isinstance(data["fallbacks"], dict):
            raise RecipeError("fallbacks: expected an object mapping a type to its fallback type")
        fallbacks = {
            _check_type(k, f"fallbacks key {k!r}"): _check_type(v, f"fallbacks[{k!r}]")
            for k, v in data["fallbacks"].items()
        }
    for src, dst in fallbacks.items():
        if block_size(dst) >= block_size(src):
            raise RecipeError(f"fallbacks[{src!r}]: {dst} has no smaller block than {src}, it cannot help")

    description = data.get("description", "")
    if not isinstance(description, str):
        raise RecipeError("description: expected a string")
    return Recipe(name, version, default_type, rules, fallbacks, description)


def load_recipe(path_or_dict: "str | Path | Mapping[str, Any]") -> Recipe:
    """A user recipe from a JSON file path or an already-parsed dict."""
    if isinstance(path_or_dict, Mapping):
        return parse_recipe(path_or_dict)
    path = Path(path_or_dict)
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise RecipeError(f"{path}: cannot read recipe: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise RecipeError(f"{path}: not valid JSON: {e}") from None
    try:
        return parse_recipe(data)
    except RecipeError as e:
        raise RecipeError(f"{path}: {e}") from None


def _builtin_data() -> dict[str, dict[str, Any]]:
    from quant.builtin_recipes import RECIPES

    return {r["name"]: r for r in RECIPES}


_CACHE: dict[str, Recipe] = {}


def builtin_names() -> list[str]:
    """Built-in recipe names, in the order they are defined."""
    return list(_builtin_data())


def get_recipe(name: str) -> Recipe:
    """A built-in recipe by name (case-insensitive)."""
    data = _builtin_data()
    key = next((k for k in data if k.upper() == name.upper()), None)
    if key is None:
        raise RecipeError(f"unknown recipe {name!r}; built-in: {', '.join(data)}")
    if key not in _CACHE:
        _CACHE[key] = parse_recipe(data[key])
    return _CACHE[key]
