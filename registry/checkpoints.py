"""Where a checkpoint's config.json comes from: a local directory or the Hugging Face Hub."""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings
from django.core.exceptions import ValidationError


def importable(path_text: str, relative_to: "Path | None" = None) -> Path:
    """The resolved path if it lies under DSQ_STORAGE_ROOT or one of DSQ_IMPORT_ROOTS, else ValidationError.

    Used for paths that API users hand in (checkpoint local_path, imatrix): the server reads
    them, so without this anyone with a token could make it read any file it can see.
    Resolving first means `..` and symlinks are judged by where they really lead.
    """
    if "\x00" in path_text:
        raise ValidationError("a path cannot contain NUL")
    path = Path(path_text)
    if not path.is_absolute():
        if relative_to is None:
            raise ValidationError(f"{path_text!r} must be an absolute path")
        path = relative_to / path
    resolved = path.resolve()
    roots = [Path(r).resolve() for r in [settings.DSQ_STORAGE_ROOT, *settings.DSQ_IMPORT_ROOTS]]
    if not any(resolved.is_relative_to(root) for root in roots):
        # The roots themselves are not named: server paths are the operator's to know (dsq/settings.py).
        raise ValidationError(f"{path_text!r} is outside the directories checkpoints may be read from "
                              "(DSQ_IMPORT_ROOTS)")
    return resolved


#: DeepSeek-V3's config.json is under 2 KB; anything near this is not a config.
MAX_CONFIG_BYTES = 1 << 20


def config_from_path(local_path: str) -> dict:
    """config.json of a local checkpoint directory (or the file itself).

    Whatever lies under an import root may be named here: a weights shard, a FIFO, a huge file.
    Only a regular file of at most MAX_CONFIG_BYTES is read, and it must be UTF-8 JSON.
    """
    path = Path(local_path)
    if path.is_dir():
        path = path / "config.json"
    try:
        if not path.is_file():  # a FIFO or a device would block the request, or never end
            raise ValidationError(f"{path} is not a regular file")
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ValidationError(f"{path} is over {MAX_CONFIG_BYTES} bytes: not a config.json")
        return json.loads(data.decode("utf-8"))
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValidationError(f"{path} is not UTF-8 text: not a config.json") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ValidationError(f"{path} is nested too deeply to be a config.json") from None


def without_endpoint(text: str) -> str:
    """An error message with the Hub's address (HF_ENDPOINT, possibly internal) replaced by `<hub>`.

    Connection errors name the host apart from the URL (`HTTPConnectionPool(host='…', port=…)`)."""
    endpoint = settings.HF_ENDPOINT.rstrip("/")
    host = urlparse(endpoint).hostname
    for part in (endpoint, host):
        if part:
            text = text.replace(part, "<hub>")
    return text


def config_from_hub(hf_repo: str, revision: str = "") -> tuple[dict, str]:
    """(config.json, pinned commit) of a Hub repository at a revision (default: main)."""
    import httpx2  # huggingface_hub's HTTP client: a Hub that cannot be reached raises its errors
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.utils import HfHubHTTPError

    try:
        api = HfApi(endpoint=settings.HF_ENDPOINT, token=settings.HF_TOKEN or None)
        commit = api.model_info(hf_repo, revision=revision or None).sha
        path = hf_hub_download(hf_repo, "config.json", revision=commit, endpoint=settings.HF_ENDPOINT,
                               token=settings.HF_TOKEN or None)
    except (HfHubHTTPError, httpx2.HTTPError, OSError, ValueError) as exc:
        raise ValidationError(f"cannot read config.json of {hf_repo}@{revision or 'main'} from the Hub: "
                              f"{without_endpoint(str(exc))}") from None
    return config_from_path(path), commit or revision


def resolve_config(*, config: "dict | None" = None, local_path: str = "", hf_repo: str = "",
                   revision: str = "") -> tuple[dict, str]:
    """The config to validate, from the first source given: inline, local path, Hub. Returns (config, revision)."""
    if config:
        return config, revision
    if local_path:
        return config_from_path(local_path), revision
    if hf_repo:
        return config_from_hub(hf_repo, revision)
    raise ValidationError("give a config, a local_path or an hf_repo to read config.json from")
