"""Partial output of a conversion: where a killed run's finished tensors wait for the next run.

A conversion writes its files into ``OUT/.dsq-partial-<stem>-<key>/`` (key: a hash of
everything the bytes depend on, quant.convert.ConversionPlan.output_key) and renames them
into OUT only when complete and verified. Next to the files:

* ``LOCK``, flock'ed by the live run: a directory whose lock can be taken belongs to no live
  process (killed, crashed, power lost) and is *stale*;
* ``journal.jsonl``, one JSON line per finished tensor (index, name, type, file, end offset,
  error statistics), appended after the tensor's bytes reached the OS. The GGUF header is
  planned up front, so a tensor's place in its file is known: a later run with the same key
  keeps the journalled tensors, truncates whatever follows them, and goes on from there.

A stale directory of the same output name with another key (other recipe, weights, shards)
can never be resumed and is removed; stale directories of other names, and ``.dsq-partial-*``
directories of older dsq versions (no journal), are reported, never touched.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator

PREFIX = ".dsq-partial-"
JOURNAL = "journal.jsonl"


@dataclass
class Stale:
    """A partial-output directory no live run holds."""

    path: Path
    bytes: int
    action: str  # "removed" (same output name, another plan) or "left" (reported only)

    def describe(self) -> str:
        verb = "removed" if self.action == "removed" else "left in place (delete it to reclaim the space)"
        return f"stale partial output {self.path.name} ({self.bytes / 2**20:,.1f} MiB) of a killed run: {verb}"


def dir_name(stem: str, key: str) -> str:
    return f"{PREFIX}{stem}-{key[:16]}"


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _try_lock(path: Path) -> "IO[Any] | None":
    """An open, exclusively flock'ed LOCK file of `path`, or None when a live process holds it."""
    fh = open(path / "LOCK", "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


class PartialOutput:
    """The locked partial directory of one conversion, created or taken over from a killed run."""

    def __init__(self, out_dir: Path, stem: str, key: str, resume: bool = True):
        self.path = out_dir / dir_name(stem, key)
        self.key = key
        self.stale: list[Stale] = []
        out_dir.mkdir(parents=True, exist_ok=True)
        for other in sorted(out_dir.glob(PREFIX + "*")):
            if other == self.path or not other.is_dir():
                continue
            self._judge(other, stem)
        self.path.mkdir(exist_ok=True)
        lock = _try_lock(self.path)
        if lock is None:
            raise RuntimeError(f"another dsq process is writing this output ({self.path}); wait for it or stop it")
        self._lock = lock
        self.done: list[dict] = self._read_journal() if resume else []
        if not resume:
            for f in self.path.iterdir():
                if f.name != "LOCK":
                    f.unlink() if f.is_file() else shutil.rmtree(f)
        self._journal: "IO[str] | None" = None
        self.keep(len(self.done))

    def keep(self, n: int) -> None:
        """Rewrite the journal with its first n entries (a line the kill cut short, or entries
        past the first that does not match the plan, must not sit before the new ones)."""
        if self._journal is not None:
            self._journal.close()
        self.done = self.done[:n]
        tmp = self.path / (JOURNAL + ".tmp")
        tmp.write_text("".join(json.dumps(e) + "\n" for e in [{"key": self.key}] + self.done))
        os.replace(tmp, self.path / JOURNAL)
        self._journal = open(self.path / JOURNAL, "a")

    def _judge(self, other: Path, stem: str) -> None:
        """Remove a stale directory of our output name made for another plan; report other stale ones."""
        if not (other / JOURNAL).is_file():  # an older dsq's (or not ours): report only
            self.stale.append(Stale(other, _size(other), "left"))
            return
        lock = _try_lock(other)
        if lock is None:
            return  # a live run: not stale
        try:
            same_name = other.name.rsplit("-", 1)[0] == PREFIX + stem
            size = _size(other)
            if same_name:
                shutil.rmtree(other, ignore_errors=True)
            self.stale.append(Stale(other, size, "removed" if same_name else "left"))
        finally:
            lock.close()

    def _read_journal(self) -> list[dict]:
        path = self.path / JOURNAL
        if not path.is_file():
            return []
        entries: list[dict] = []
        with open(path) as fh:
            lines = fh.read().split("\n")
        # a line cut by the kill has no newline after it: only complete lines count
        complete = lines[:-1]
        if not complete:
            return []
        try:
            head = json.loads(complete[0])
        except ValueError:
            return []
        if head.get("key") != self.key:
            return []
        for line in complete[1:]:
            try:
                entries.append(json.loads(line))
            except ValueError:
                break
        return entries

    def record(self, entry: dict) -> None:
        """Journal a finished tensor (call after its bytes were written and flushed)."""
        assert self._journal is not None
        self._journal.write(json.dumps(entry) + "\n")
        self._journal.flush()

    def entries(self) -> Iterator[dict]:
        return iter(self.done)

    def release(self, remove: bool) -> None:
        """Unlock; remove the directory (finished, failed or cancelled) or keep it for a resume."""
        if self._journal is not None:
            self._journal.close()
        if remove:
            shutil.rmtree(self.path, ignore_errors=True)
        self._lock.close()
