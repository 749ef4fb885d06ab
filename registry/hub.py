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


def public_url() -> str:
    """The Hub address clients are sent to: DSQ_HUB_PUBLIC_URL, else HF_ENDPOINT; "" means none.

    HF_ENDPOINT is where the workers publish, which may be an address only the servers know."""
    value = settings.DSQ_HUB_PUBLIC_URL
    return (settings.HF_ENDPOINT if value is None else value).rstrip("/")


def file_url(repo: str, commit: str, path: str, base: "str | None" = None) -> str:
    """A file at a pinned commit (what a pull downloads), on the Hub at `base` (default HF_ENDPOINT)."""
    return f"{(settings.HF_ENDPOINT if base is None else base).rstrip('/')}/{repo}/resolve/{commit}/{path}"


def quant_ref(repo: str, quant: str) -> str:
    """`REPO:QUANT`, as `llama-server -hf` and `ollama run hf.co/…` take it."""
    return f"{repo}:{quant}"
