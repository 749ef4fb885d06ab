"""Public Hugging Face config.json files of the models dsq serves, typed from the published values.

One JSON file per model, named as the Hugging Face repository without its owner
(``deepseek-ai/``, ``moonshotai/`` for Kimi-K2); the registry pre-registers them.
Files added after R1-0528 carry a ``_source`` key: where the values came from and
which could not be checked against the Hub (llama.cpp's converter ignores it).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent


def names() -> list[str]:
    """Model names with a shipped config, sorted."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_config(name: str) -> dict[str, Any]:
    """The config of a shipped model (case-insensitive name, optional ``deepseek-ai/`` prefix)."""
    wanted = name.split("/")[-1].lower()
    for known in names():
        if known.lower() == wanted:
            return json.loads((CONFIG_DIR / f"{known}.json").read_text())
    raise KeyError(f"no shipped config for {name!r}; known: {', '.join(names())}")
