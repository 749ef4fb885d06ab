"""Pull by tag: `<model>:<quant>@<tag>` → the exact files, where to download them, how to run them."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import Http404
from django.urls import reverse

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


def hub_path(variant, name: str) -> str:
    """Where a variant's file lives in its Hub repo: one folder per quant (what `-hf repo:QUANT` looks for)."""
    return f"{variant.quant_name}/{name}"


def public_hub_url() -> str:
    """The Hub address clients are sent to: DSQ_HUB_PUBLIC_URL, else HF_ENDPOINT; "" means none.

    HF_ENDPOINT is where the workers publish, which may be an address only the servers know."""
    value = settings.DSQ_HUB_PUBLIC_URL
    return (settings.HF_ENDPOINT if value is None else value).rstrip("/")


def hub_file_url(release: Release, name: str, hub: str) -> str:
    """The file at the release's pinned commit on the Hub at `hub`."""
    return f"{hub}/{release.hub_repo}/resolve/{release.hub_commit}/{hub_path(release.variant, name)}"


def manifest(ref: Ref, release: Release, request) -> dict[str, Any]:
    """Files with sizes, hashes and download URLs, and commands that run them."""
    variant = release.variant
    files = list(variant.files.all())
    published = release.state == Release.State.PUBLISHED and release.hub_repo and release.hub_commit
    hub = public_hub_url() if published else ""
    entries = []
    for f in files:
        local = request.build_absolute_uri(reverse("file-download", args=[variant.pk, f.name]))
        entries.append({"name": f.name, "size": f.size, "sha256": f.sha256,
                        "url": hub_file_url(release, f.name, hub) if hub else local, "registry_url": local})
    first = files[0].name if files else ""
    quant = variant.recipe.name
    commands = {
        "download": [f"curl -fL -C - -o {shlex.quote(e['name'])} {shlex.quote(e['url'])}" for e in entries],
        "llama_server": f"llama-server -m {shlex.quote(first)} -ngl 999 --ctx-size 8192" if first else None,
        "llama_cli": f"llama-cli -m {shlex.quote(first)} -ngl 999 --ctx-size 8192" if first else None,
    }
    if published:
        commands["llama_cli_hub"] = f"llama-cli -hf {release.hub_repo}:{quant}"
        commands["llama_server_hub"] = f"llama-server -hf {release.hub_repo}:{quant}"
        commands["ollama"] = f"ollama run hf.co/{release.hub_repo}:{quant}"
    return {
        "ref": str(ref), "model": variant.checkpoint.name, "quant": quant, "tag": ref.tag,
        "release": {"id": release.pk, "version": release.label, "state": release.state},
        "variant": variant.pk, "total_bytes": sum(f.size for f in files), "bits_per_weight": variant.bits_per_weight,
        "source": "hub" if hub else "registry",
        "hub": {"repo": release.hub_repo, "commit": release.hub_commit} if published else None,
        "files": entries, "commands": commands,
    }


def schedule_publish(release: Release) -> None:
    """Send dsq.publish once the surrounding transaction commits.

    The task is sent by name through the Celery app, so the registry never imports worker code.
    A broker that is down loses nothing: the reaper re-sends approved, unpublished releases.
    """
    from django.db import transaction

    release_id = release.pk
    transaction.on_commit(lambda: send_publish(release_id))


def send_publish(release_id: int) -> bool:
    import logging

    from workers.celery_app import app

    try:
        app.send_task("dsq.publish", args=[release_id], retry=False)
        return True
    except Exception as exc:  # broker unreachable: the approval stands, the reaper sends it later
        logging.getLogger(__name__).warning("release %s: publish not sent (%s); the reaper will retry",
                                            release_id, exc)
        return False


def unpublished(older_than_seconds: float) -> list[int]:
    """Approved releases still not on the Hub a while after their approval (a lost or failed publish)."""
    import datetime as dt

    from django.utils import timezone

    cutoff = timezone.now() - dt.timedelta(seconds=older_than_seconds)
    return list(Release.objects.filter(state=Release.State.APPROVED, decided_at__lt=cutoff)
                .values_list("pk", flat=True))
