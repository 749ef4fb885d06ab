"""Publish an approved release to the Hugging Face Hub: one atomic commit, one tag, recorded on the row.

Layout and names are registry.hub's (one repo per base model, a folder per quant, a tag per
release), plus a README.md model card describing every published quant (workers.model_card).
Each release is one commit created against the branch head we read (`parent_commit`), then
its Hub tag on that commit.

Idempotent: a release whose tag already exists on the Hub, or whose commit landed but whose
tag did not, is recorded without uploading anything again. Transient Hub errors (5xx, 429,
connection resets) are retried with bounded exponential backoff. The token comes from
settings.HF_TOKEN (the environment) and is only ever handed to the client.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from django.conf import settings

from registry import hub
from registry.models import Release
from workers import storage
from workers.model_card import render_card

log = logging.getLogger(__name__)
T = TypeVar("T")
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


class PublishError(RuntimeError):
    """The release cannot be published (not approved, files missing, Hub refused)."""


@dataclass(frozen=True)
class PublishResult:
    repo_id: str
    commit: str
    tag: str
    uploaded: bool  # False when the Hub already had this release


def hub_api():
    """An HfApi on settings.HF_ENDPOINT with settings.HF_TOKEN (never stored, never logged)."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=settings.HF_ENDPOINT, token=settings.HF_TOKEN or None, library_name="dsq")


def commit_title(release: Release) -> str:
    """Unique per release: lets a retry find a commit whose response was lost."""
    return f"dsq: publish {release.variant.checkpoint.name} {hub.tag(release)}"


def is_transient(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status is not None:
        return status in TRANSIENT_STATUS
    try:
        import httpx2

        if isinstance(exc, httpx2.TransportError):
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(exc, (ConnectionError, TimeoutError))


def status_of(exc: BaseException) -> "int | None":
    return getattr(getattr(exc, "response", None), "status_code", None)


def backoff_seconds(attempt: int) -> float:
    """How long to wait after failed attempt `attempt` (1-based): doubling from DSQ_PUBLISH_BACKOFF_SECONDS, at most 60 s."""
    return min(60.0, settings.DSQ_PUBLISH_BACKOFF_SECONDS * 2 ** (attempt - 1))


def with_retries(what: str, call: Callable[[], T]) -> T:
    """Run `call`, retrying transient Hub errors with exponential backoff; other errors go straight up."""
    attempts = settings.DSQ_PUBLISH_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            wait = backoff_seconds(attempt)
            log.warning("%s: transient Hub error (%s, status %s); retry %d/%d in %.1fs",
                        what, type(exc).__name__, status_of(exc), attempt, attempts - 1, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def artifact_paths(release: Release) -> list[tuple[Path, str]]:
    """(local file, path in repo) for every artifact of the release's variant, checked to exist."""
    variant = release.variant
    root = storage.variant_dir(variant)
    files = list(variant.files.all())
    if not files:
        raise PublishError(f"{variant} has no artifact files")
    out = []
    for f in files:
        local = root / f.name
        if not local.is_file() or local.stat().st_size != f.size:
            raise PublishError(f"artifact {local} is missing or has the wrong size")
        out.append((local, hub.path_in_repo(variant, f.name)))
    return out


def publish_release(release_id: int, api=None) -> PublishResult:
    """Publish one approved release (or record that the Hub already has it)."""
    release = Release.objects.select_related("variant__checkpoint", "variant__recipe").get(pk=release_id)
    repo_id, tag = hub.repo_id(release.variant.checkpoint), hub.tag(release)
    if release.state == Release.State.PUBLISHED and release.hub_commit:
        return PublishResult(release.hub_repo, release.hub_commit, release.hub_tag, uploaded=False)
    if release.state != Release.State.APPROVED:
        raise PublishError(f"release {release} is {release.state}; only approved releases are published")
    api = api or hub_api()

    with_retries("create repo", lambda: api.create_repo(repo_id, exist_ok=True))
    commit, tagged = existing_commit(api, repo_id, release)
    uploaded = commit is None
    if commit is None:
        commit = upload(api, repo_id, release)
    if not tagged:
        ensure_tag(api, repo_id, tag, commit)
    record(release, repo_id, commit, tag)
    log.info("release %s published to %s@%s (%s)", release.pk, repo_id, tag,
             "new commit" if uploaded else "already on the Hub")
    return PublishResult(repo_id, commit, tag, uploaded)


def existing_commit(api, repo_id: str, release: Release) -> "tuple[str | None, bool]":
    """(commit already holding this release, whether it is tagged): the tag's target, else a commit
    on main with the release's unique title (its tag was never created), else (None, False)."""
    tag = hub.tag(release)
    refs = with_retries("list refs", lambda: api.list_repo_refs(repo_id))
    for ref in refs.tags:
        if ref.name == tag:
            return ref.target_commit, True
    title = commit_title(release)
    for commit in with_retries("list commits", lambda: api.list_repo_commits(repo_id)):
        if commit.title == title:
            return commit.commit_id, False
    return None, False


def upload(api, repo_id: str, release: Release) -> str:
    """One commit with the release's files and the refreshed card, against the head we read."""
    from huggingface_hub import CommitOperationAdd

    files = artifact_paths(release)
    title = commit_title(release)
    max_attempts = settings.DSQ_PUBLISH_ATTEMPTS
    for attempt in range(1, max_attempts + 1):
        head = with_retries("read head", lambda: api.repo_info(repo_id, revision="main")).sha
        check_llama_cpp_choice(api, repo_id, head, [path for _, path in files])
        card = render_card(release, repo_id)
        ops = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(local)) for local, path in files]
        ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode()))
        try:
            info = api.create_commit(repo_id, ops, commit_message=title, parent_commit=head,
                                     commit_description=f"Release {release.label} of {release.variant}.")
            return info.oid
        except Exception as exc:
            if attempt == max_attempts or not (is_transient(exc) or status_of(exc) == 412):
                raise
            # The commit may have landed with its response lost: look before sending it again.
            landed, _ = existing_commit(api, repo_id, release)
            if landed is not None:
                return landed
            wait = backoff_seconds(attempt)
            log.warning("commit for %s failed (status %s); retry %d/%d in %.1fs",
                        repo_id, status_of(exc), attempt, max_attempts - 1, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def check_llama_cpp_choice(api, repo_id: str, head: str, new_paths: list[str]) -> None:
    """Refuse a commit after which `llama-server -hf REPO:QUANT` would load another quant's file
    for some quant that resolved to its own before (registry.hub says why this can happen)."""
    existing = with_retries("list files", lambda: api.list_repo_files(repo_id, revision=head))
    before = set(hub.llama_cpp_clashes(existing))
    after = [c for c in hub.llama_cpp_clashes(sorted(set(existing) | set(new_paths))) if c not in before]
    if after:
        raise PublishError(f"publishing to {repo_id} would break llama.cpp's choice of file: {'; '.join(after)}")


def ensure_tag(api, repo_id: str, tag: str, commit: str) -> None:
    try:
        with_retries("create tag", lambda: api.create_tag(repo_id, tag=tag, revision=commit,
                                                          tag_message=f"dsq release {tag}"))
    except Exception as exc:
        if status_of(exc) != 409:
            raise
        refs = with_retries("list refs", lambda: api.list_repo_refs(repo_id))
        target = next((r.target_commit for r in refs.tags if r.name == tag), None)
        if target != commit:
            raise PublishError(f"Hub tag {tag} on {repo_id} points at {target}, not {commit}") from exc


def record(release: Release, repo_id: str, commit: str, tag: str) -> None:
    release.mark_published(repo_id, commit, tag, hub.quant_folder(release.variant.quant_name))
