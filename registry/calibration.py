"""Calibration datasets: the texts importance matrices are computed from, stored once by their hash.

A dataset's text is copied to `calibration/<sha256>.txt` under DSQ_STORAGE_ROOT when it is registered,
so a worker reads exactly the bytes the registry hashed, whatever happens to the file it came from.
The default dataset ships with Python: the held-apart tail of CPython's pydoc topics
(quant.eval.text.calibration_text), the part tier-1 benchmarks never score.
"""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from registry.checkpoints import importable
from registry.models import AuditLog, CalibrationDataset

DEFAULT_NAME = "pydoc-topics-calibration"
#: A calibration text is read whole by llama-imatrix; DeepSeek's published ones are a few MB.
MAX_BYTES = 64 << 20


def stored_path(dataset: CalibrationDataset) -> Path:
    return Path(settings.DSQ_STORAGE_ROOT) / dataset.storage_path


def _store(data: bytes) -> tuple[str, str]:
    """Write the text under the storage root by its hash (atomically); returns (sha256, relative path)."""
    sha = hashlib.sha256(data).hexdigest()
    relative = Path("calibration") / f"{sha}.txt"
    final = Path(settings.DSQ_STORAGE_ROOT) / relative
    if not (final.is_file() and final.stat().st_size == len(data)):
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f"{final.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, final)
    return sha, str(relative)


def register(name: str, text: str, *, source: str, language: str = "", domain: str = "", notes: str = "",
             user=None, builtin: bool = False) -> tuple[CalibrationDataset, bool]:
    """Store a text as a dataset, or return the dataset that already holds these exact bytes.

    ValidationError when the name is taken by another text or the text is empty or too large."""
    CalibrationDataset._meta.get_field("name").run_validators(name)
    data = text.encode("utf-8")
    if not data.strip():
        raise ValidationError("a calibration text cannot be empty")
    if len(data) > MAX_BYTES:
        raise ValidationError(f"a calibration text is at most {MAX_BYTES} bytes, this one has {len(data)}")
    sha = hashlib.sha256(data).hexdigest()
    existing = CalibrationDataset.objects.filter(sha256=sha).first()
    if existing is not None:
        return existing, False
    if CalibrationDataset.objects.filter(name=name).exists():
        raise ValidationError(f"a calibration dataset named {name!r} already exists with another text")
    sha, relative = _store(data)
    try:
        with transaction.atomic():
            dataset = CalibrationDataset.objects.create(
                name=name, sha256=sha, size=len(data), language=language[:50], domain=domain[:200], notes=notes,
                source=source[:1000], storage_path=relative, builtin=builtin, created_by=user)
            AuditLog.record(user, "calibration.register", dataset, sha256=sha, size=len(data), source=source[:200])
    except IntegrityError:  # the same text or name registered meanwhile
        dataset = CalibrationDataset.objects.filter(sha256=sha).first()
        if dataset is None:
            raise ValidationError(f"a calibration dataset named {name!r} already exists with another text") from None
        return dataset, False
    return dataset, True


def register_file(name: str, path_text: str, **facts) -> tuple[CalibrationDataset, bool]:
    """A dataset from a UTF-8 text file under DSQ_STORAGE_ROOT or DSQ_IMPORT_ROOTS (never an upload)."""
    path = importable(path_text)
    try:
        st = path.stat()
    except OSError:
        raise ValidationError(f"{path_text!r} does not exist") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValidationError(f"{path_text!r} is not a regular file")
    if st.st_size > MAX_BYTES:
        raise ValidationError(f"a calibration text is at most {MAX_BYTES} bytes, {path_text!r} has {st.st_size}")
    try:
        text = path.read_bytes()[:MAX_BYTES + 1].decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError(f"{path_text!r} is not UTF-8 text") from None
    return register(name, text, **{"source": f"file {path.name}", **facts})


def default_dataset() -> CalibrationDataset:
    """The shipped offline dataset, registered on first use (the stored text stays the dataset even
    when another Python's pydoc topics differ)."""
    existing = CalibrationDataset.objects.filter(name=DEFAULT_NAME).first()
    if existing is not None:
        return existing
    import sys

    from quant.eval.text import CALIBRATION_FRACTION, calibration_text

    dataset, _ = register(
        DEFAULT_NAME, calibration_text(), builtin=True, language="en", domain="Python documentation and code",
        source=f"CPython {sys.version.split()[0]} pydoc_data.topics, last {CALIBRATION_FRACTION:.0%} "
               "(quant.eval.text.calibration_text)",
        notes="Held apart from the text tier-1 benchmarks score (quant.eval.text.evaluation_text). "
              "For the trained tiny MoE it is training text.")
    return dataset


def check_stored(dataset: CalibrationDataset) -> Path:
    """The stored text, checked against its hash (a worker calls this before using it)."""
    path = stored_path(dataset)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    if sha != dataset.sha256:
        raise ValueError(f"calibration dataset {dataset.name}: stored text has sha256 {sha[:12]}, "
                         f"registered {dataset.sha256[:12]}")
    return path
