"""Where a worker writes under DSQ_STORAGE_ROOT, and a full disk reported as such.

`work/<name>/` holds a job's temporary files (a quantization's finished tensors survive there
for a retry); `variants/<checkpoint>/<recipe>-<variant id>/` holds a variant's finished files
(Variant.storage_path, relative to the root).
"""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from django.conf import settings

from registry.models import Variant

STORAGE_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class StorageFull(OSError):
    """The disk (or a quota or file size limit) stopped a job's writes; the message says where."""


def storage_root() -> Path:
    return Path(settings.DSQ_STORAGE_ROOT)


def work_dir(name: str) -> Path:
    """A job's temporary directory, e.g. work_dir("17") or work_dir("benchmark-3")."""
    return storage_root() / "work" / name


def variant_relative_dir(variant: Variant) -> Path:
    """Where a variant's files go, relative to the root (stored as Variant.storage_path)."""
    return Path("variants") / variant.checkpoint.name / f"{variant.recipe.name}-{variant.pk}"


def variant_dir(variant: Variant) -> Path:
    """A registered variant's directory (its storage_path is relative to the root, or absolute)."""
    return storage_root() / variant.storage_path


def first_file(variant: Variant) -> Path:
    """The GGUF llama.cpp opens (the first split shard when there are several)."""
    return variant_dir(variant) / variant.files.order_by("name").first().name


def storage_full(exc: OSError, where: Path) -> StorageFull:
    """A StorageFull naming the directory being written and what is left there.

    A failed write() reports ENOSPC without a file name; the job's error must still tell an
    operator which filesystem to clean up."""
    try:
        free = f"{shutil.disk_usage(where if where.exists() else storage_root()).free:,} bytes free"
    except OSError:
        free = "free space unknown"
    target = exc.filename or where
    return StorageFull(exc.errno, f"{os.strerror(exc.errno)} while writing {target} ({free})")


def remove_partial_tensors(cache: Path) -> None:
    """Drop half-written cache entries (`*.tmp`, e.g. cut short by a full disk); finished ones stay for the retry."""
    for partial in cache.glob("*.tmp"):
        partial.unlink(missing_ok=True)
