"""Tokenizer metadata for GGUF from a Hugging Face ``tokenizer.json`` (byte-level BPE).

Writes what llama.cpp's tokenizer reads: ``tokenizer.ggml.model`` ("gpt2"),
``tokenizer.ggml.pre`` (the pre-tokenizer, recognised from the regexes in
``tokenizer.json``), the token list, token types and merges, and through gguf's
SpecialVocab the BOS/EOS/PAD ids, add_bos/add_eos flags and chat template.

Token types follow convert_hf_to_gguf: an added token that is special, or looks special
(``<|...|>``, ``<｜...｜>``), is CONTROL; another added token is USER_DEFINED; ids the vocab
does not cover up to ``vocab_size`` become ``[PAD<id>]`` UNUSED entries.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gguf

# llama.cpp pre-tokenizer names keyed by the shape of tokenizer.json's pre_tokenizer:
# the Split regexes in order, then whether the ByteLevel step splits with GPT-2's regex,
# and whether single digits are split off first.
_DEEPSEEK_V3 = (
    "\\p{N}{1,3}",
    "[一-龥\u3040-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
)
_LLAMA3 = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
)
_QWEN2 = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
)

PRE_TOKENIZERS: dict[tuple, str] = {
    ("split", _DEEPSEEK_V3, "bytelevel-noregex"): "deepseek-v3",
    ("split", _LLAMA3, "bytelevel-noregex"): "llama-bpe",
    ("split", _QWEN2, "bytelevel-noregex"): "qwen2",
    ("digits", (), "bytelevel-regex"): "smollm",
    ("none", (), "bytelevel-regex"): "gpt-2",
}

# The pre_tokenizer objects that produce each name: used by quant.tiny and tests to build
# tokenizers that llama.cpp tokenizes the same way.
def pre_tokenizer_json(name: str) -> dict[str, Any]:
    bytelevel_noregex = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    bytelevel_regex = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    for (kind, regexes, bl), pre in PRE_TOKENIZERS.items():
        if pre != name:
            continue
        steps: list[dict[str, Any]] = []
        if kind == "split":
            steps = [
                {"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": False} for r in regexes
            ]
        elif kind == "digits":
            steps = [{"type": "Digits", "individual_digits": True}]
        steps.append(bytelevel_regex if bl == "bytelevel-regex" else bytelevel_noregex)
        return {"type": "Sequence", "pretokenizers": steps}
    raise KeyError(name)


class VocabError(ValueError):
    pass


def _signature(pre: "dict | None") -> tuple:
    if pre is None:
        return ("none", (), "none")
    steps = pre["pretokenizers"] if pre.get("type") == "Sequence" else [pre]
    regexes: list[str] = []
    digits = False
    bytelevel = "none"
    for s in steps:
        t = s.get("type")
        if t == "Split":
            pat = s.get("pattern", {})
            regexes.append(pat.get("Regex", pat.get("String")))
        elif t == "Digits":
            digits = True
        elif t == "ByteLevel":
            bytelevel = "bytelevel-regex" if s.get("use_regex", True) else "bytelevel-noregex"
    kind = "split" if regexes else ("digits" if digits else "none")
    return (kind, tuple(regexes), bytelevel)


def detect_pre_tokenizer(tokenizer: dict) -> str:
    """llama.cpp's name for the pre-tokenizer of a tokenizer.json; VocabError if unknown."""
    sig = _signature(tokenizer.get("pre_tokenizer"))
    name = PRE_TOKENIZERS.get(sig)
    if name is None:
        raise VocabError(
            "unrecognised pre-tokenizer in tokenizer.json (known: "
            + ", ".join(sorted(set(PRE_TOKENIZERS.values())))
            + f"); found {sig!r}. Pass tokenizer_pre= to name it explicitly."
        )
    return name


def _looks_special(token: str) -> bool:
    return (token.startswith("<|") and token.endswith("|>")) or (token.startswith("<｜") and token.endswith("｜>"))


def add_vocab(writer: gguf.GGUFWriter, model_dir: Path, vocab_size: "int | None", tokenizer_pre: "str | None" = None) -> None:
    """Add the tokenizer key/values of a byte-level BPE tokenizer.json to writer."""
    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        raise VocabError(f"{model_dir}: no tokenizer.json (only byte-level BPE tokenizers are supported)")
    tok = json.loads(path.read_text(encoding="utf-8"))
    model = tok.get("model", {})
    if model.get("type") != "BPE":
        raise VocabError(f"tokenizer.json: model type {model.get('type')!r}; only BPE is supported")
    pre = tokenizer_pre or detect_pre_tokenizer(tok)

    vocab: dict[str, int] = dict(model["vocab"])
    added = {a["content"]: a for a in tok.get("added_tokens", [])}
    for content, a in added.items():
        vocab[content] = a["id"]
    n = vocab_size if vocab_size is not None else max(vocab.values()) + 1
    if max(vocab.values()) >= n:
        raise VocabError(f"tokenizer has id {max(vocab.values())} but vocab_size is {n}")
    by_id = {i: t for t, i in vocab.items()}

    tokens: list[str] = []
    types: list[int] = []
    for i in range(n):
        token = by_id.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(token)
        a = added.get(token)
        if a is not None:
            types.append(gguf.TokenType.CONTROL if a.get("special") or _looks_special(token) else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)

    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    special = gguf.SpecialVocab(model_dir, load_merges=False, n_vocab=n)
    special.add_to_gguf(writer, quiet=True)
