"""How dsq names things on the Hugging Face Hub: the one place publishing, pulls and the model card read.

One repo per base model, `<namespace>/<checkpoint>-GGUF`; one folder per quant holding its
GGUF file(s) (what `llama-server -hf REPO:QUANT` and Ollama look for); one tag per release,
`<QUANT>-v<N>`, on the commit that published it.
"""
from __future__ import annotations

from django.conf import settings


def repo_id(checkpoint) -> str:
    """The repo a checkpoint's quants are published to."""
    return f"{settings.DSQ_HUB_NAMESPACE}/{checkpoint.name}-GGUF"


def path_in_repo(variant, name: str) -> str:
    """Where a variant's file lives in its repo: the quant's folder."""
    return f"{variant.quant_name}/{name}"


def tag(release) -> str:
    """The Hub tag of a release: the quant and the release's version."""
    return f"{release.variant.quant_name}-v{release.version}"


def file_url(repo: str, commit: str, path: str) -> str:
    """A file at a pinned commit (what a pull downloads)."""
    return f"{settings.HF_ENDPOINT.rstrip('/')}/{repo}/resolve/{commit}/{path}"


def quant_ref(repo: str, quant: str) -> str:
    """`REPO:QUANT`, as `llama-server -hf` and `ollama run hf.co/…` take it."""
    return f"{repo}:{quant}"
