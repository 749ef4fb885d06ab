"""Pull by tag: `<model>:<quant>@<tag>` → the exact files, where to download them, how to run them.

A published release is downloaded from the Hub commit it was published to (registry.hub);
an approved one not yet published, from the registry itself.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from django.http import Http404
from django.urls import reverse

from registry import hub
from registry.models import Release, Tag

REF = re.compile(r"(?P<model>[A-Za-z0-9._-]+):(?P<quant>[A-Za-z0-9._+-]+)(?:@(?P<tag>[A-Za-z0-9._-]+))?")
DEFAULT_TAG = "latest"


@dataclass(frozen=True)
class Ref:
    model: str
    quant: str
    tag: str

    def __str__(self) -> str:
        return f"{self.model}:{self.quant}@{self.tag}"


def parse_ref(text: str) -> Ref:
    """`deepseek-r1:DQ3_K_M@stable`; the tag defaults to `latest`."""
    m = REF.fullmatch(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a pull reference: expected <model>:<quant>[@<tag>], "
                         f"e.g. deepseek-r1:DQ3_K_M@stable")
    return Ref(m["model"], m["quant"], m["tag"] or DEFAULT_TAG)


def resolve(ref: Ref) -> Release:
    """The release a tag points at; 404 when there is none or it cannot be pulled."""
    tag = (Tag.objects.select_related("release__variant__checkpoint", "release__variant__recipe")
           .filter(checkpoint__name=ref.model, quant__iexact=ref.quant, name=ref.tag).first())
    if tag is None:
        raise Http404(f"no tag {ref}")
    if not tag.release.pullable:
        raise Http404(f"{ref} points at a {tag.release.state} release")
    return tag.release


def manifest(ref: Ref, release: Release, request) -> dict[str, Any]:
    """Files with sizes, hashes and download URLs, and commands that run them."""
    variant = release.variant
    files = list(variant.files.all())
    published = release.state == Release.State.PUBLISHED and release.hub_repo and release.hub_commit
    base = hub.public_url() if published else ""
    entries = []
    for f in files:
        local = request.build_absolute_uri(reverse("file-download", args=[variant.pk, f.name]))
        path = hub.published_path(release, f.name)
        remote = hub.file_url(release.hub_repo, release.hub_commit, path, base) if base else ""
        entries.append({"name": f.name, "size": f.size, "sha256": f.sha256,
                        "url": remote or local, "registry_url": local})
    first = files[0].name if files else ""
    quant = variant.recipe.name
    commands = {
        "download": [f"curl -fL -C - -o {shlex.quote(e['name'])} {shlex.quote(e['url'])}" for e in entries],
        "llama_server": f"llama-server -m {shlex.quote(first)} -ngl 999 --ctx-size 8192" if first else None,
        "llama_cli": f"llama-cli -m {shlex.quote(first)} -ngl 999 --ctx-size 8192" if first else None,
    }
    if published:
        on_hub = hub.quant_ref(release.hub_repo, quant)
        commands["llama_cli_hub"] = f"llama-cli -hf {on_hub}"
        commands["llama_server_hub"] = f"llama-server -hf {on_hub}"
        commands["ollama"] = f"ollama run hf.co/{on_hub}"
    return {
        "ref": str(ref), "model": variant.checkpoint.name, "quant": quant, "tag": ref.tag,
        "release": {"id": release.pk, "version": release.label, "state": release.state},
        "variant": variant.pk, "total_bytes": sum(f.size for f in files), "bits_per_weight": variant.bits_per_weight,
        "source": "hub" if base else "registry",
        "hub": {"repo": release.hub_repo, "commit": release.hub_commit} if published else None,
        "files": entries, "commands": commands,
    }
