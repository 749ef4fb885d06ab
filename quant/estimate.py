"""A time plan before the job: how long a planned conversion takes on a host, and the disk it needs.

From the planner's tensor list (each tensor's GGUF type and weight count), the measured codec
throughput per type and device (``quant/data/throughput.json``: every row names the command and
the machine that measured it) and the host (devices, hosts, disk read and write rates), three
stage times:

* **read**: the source bytes the reader pulls from disk, over the hosts' read rate;
* **codec**: weights / measured weights per second of each tensor's type on one device, summed per
  split file and scheduled over the devices as shard jobs are (below);
* **write**: the output bytes (twice with a job's tensor cache: each finished tensor is written
  to ``work/<job>/tensors`` and to the GGUF), over the hosts' write rate.

quant.pipeline overlaps the three (reader thread, codec, writer thread; queues of two slabs), so
the end-to-end time is bounded by the slowest stage, which the estimate names. What it leaves out:
the reader's CPU work (FP8 x scales -> float32) counts as disk time only; an importance matrix
(the measured rows are without one); start-up (imports, compiling the CPU kernels: about a minute
once per host); and verification (headers only).

Several devices or hosts share a job the way dsq runs it: the GGUF is split into files of at most
`shard_bytes` (DSQ_SHARD_BYTES; gguf-split's greedy rule) and each file is one shard job that a
free device takes, largest first (registry.shards). The codec stage is that schedule's length: the
busiest device's sum of its files, never below the largest file. Each host reads its share from
its own disk.

A type without a measured row for the device (and thread count) is reported as "no measurement",
never guessed: the codec time then covers the measured types only and says so.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from quant import architectures
from quant.recipes import is_quantizable

THROUGHPUT_FILE = Path(__file__).resolve().parent / "data" / "throughput.json"

#: Assumed, not measured: a local NVMe array reads a few GiB/s; set the host's own with --read-rate.
DEFAULT_READ_RATE = 2 << 30
#: Assumed, not measured: the writer also sha256-hashes what it writes.
DEFAULT_WRITE_RATE = 1 << 30
#: What workers.quantize.requirements adds to the output and the tensor cache.
DISK_HEADROOM = 64 << 20

DEVICES = ("cpu", "cuda")


class EstimateError(ValueError):
    """An input the estimate cannot use (no such device, a rate that is not positive)."""


@dataclass(frozen=True)
class Rate:
    """One measured throughput: weights per second of one GGML type on one device."""

    type: str
    device: str
    weights_per_s: float
    threads: "int | None" = None  # CPU rows: torch threads of the measurement
    machine: str = ""
    command: str = ""
    source: str = ""  # where the figure is recorded (a file, a commit)
    note: str = ""

    def describe(self) -> str:
        """Where the figure comes from: the machine (and threads) and the record of the measurement."""
        if not self.machine:
            return self.source or self.command
        where = f"{self.machine}, {self.threads} thread(s)" if self.device == "cpu" else self.machine
        return f"{where}; {self.source or self.command}"


@dataclass(frozen=True)
class ThroughputTable:
    """Measured rows; overrides (`--throughput TYPE=RATE`) win over them for every device."""

    rows: tuple[Rate, ...]
    overrides: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, path: "str | Path | None" = None) -> "ThroughputTable":
        data = json.loads(Path(path or THROUGHPUT_FILE).read_text())
        rows = []
        for group in data["measurements"]:
            common = {k: group.get(k, "") for k in ("machine", "command", "source", "note")}
            for qtype, rate in group["weights_per_s"].items():
                rows.append(Rate(qtype, group["device"], float(rate), group.get("threads"), **common))
        return cls(tuple(rows))

    def with_overrides(self, overrides: Mapping[str, float]) -> "ThroughputTable":
        for qtype, rate in overrides.items():
            if not rate > 0:
                raise EstimateError(f"throughput of {qtype} must be positive, got {rate}")
        return ThroughputTable(self.rows, {**self.overrides, **overrides})

    def rate(self, qtype: str, device: str, threads: "int | None" = None) -> "Rate | None":
        """The row for qtype on device (CPU: measured at exactly `threads`), or None: no measurement."""
        if qtype in self.overrides:
            return Rate(qtype, device, self.overrides[qtype], threads, source="given on the command line")
        for row in self.rows:
            if row.type == qtype and row.device == device and (device != "cpu" or row.threads == threads):
                return row
        return None

    def cpu_threads(self) -> list[int]:
        """Thread counts with at least one CPU row."""
        return sorted({r.threads for r in self.rows if r.device == "cpu" and r.threads})


@dataclass(frozen=True)
class Host:
    """Where the job runs. A CUDA host runs one codec per GPU; a CPU host one codec of `threads` threads.

    Rates are per host in bytes per second; hosts read and write their share of the files in parallel."""

    device: str = "cuda"
    gpus: int = 1
    threads: int = 1
    hosts: int = 1
    read_rate: float = DEFAULT_READ_RATE
    write_rate: float = DEFAULT_WRITE_RATE
    tensor_cache: bool = True  # a job keeps finished tensors in work/<job>/tensors; `dsq quantize` does not
    shard_bytes: "int | None" = None  # split files of at most this size (DSQ_SHARD_BYTES): one shard job each

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise EstimateError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        for name in ("gpus", "threads", "hosts"):
            if getattr(self, name) < 1:
                raise EstimateError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("read_rate", "write_rate"):
            if not getattr(self, name) > 0:
                raise EstimateError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def devices(self) -> int:
        return self.hosts * (self.gpus if self.device == "cuda" else 1)

    def describe(self) -> str:
        per = f"{self.gpus} GPU(s)" if self.device == "cuda" else f"CPU, {self.threads} thread(s)"
        return f"{self.hosts} host(s) x {per}; disk read {_rate(self.read_rate)}, write {_rate(self.write_rate)} per host"


@dataclass(frozen=True)
class Stage:
    name: str
    seconds: float
    detail: str


@dataclass(frozen=True)
class TypeTime:
    """One GGML type's share of the codec stage (seconds on one device; None: no measurement)."""

    type: str
    tensors: int
    weights: int
    rate: "Rate | None"

    @property
    def seconds(self) -> "float | None":
        return None if self.rate is None else self.weights / self.rate.weights_per_s


@dataclass(frozen=True)
class DiskNeeds:
    source_bytes: int
    output_bytes: int
    tensor_cache_bytes: int

    @property
    def free_bytes(self) -> int:
        """Free space the job needs beside its source: the output and the tensor cache, plus headroom
        (workers.quantize.requirements asks the same)."""
        return self.output_bytes + self.tensor_cache_bytes + DISK_HEADROOM


@dataclass(frozen=True)
class Estimate:
    host: Host
    stages: tuple[Stage, ...]
    types: tuple[TypeTime, ...]
    disk: DiskNeeds
    source_note: str

    @property
    def missing(self) -> list[TypeTime]:
        """Types with no measurement: the codec time leaves their weights out."""
        return [t for t in self.types if t.rate is None]

    @property
    def bound(self) -> Stage:
        """The slowest stage: the pipeline overlaps all three, so the job takes about as long as it."""
        return max(self.stages, key=lambda s: s.seconds)

    @property
    def seconds(self) -> float:
        return self.bound.seconds

    @property
    def complete(self) -> bool:
        return not self.missing

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def summary(self) -> str:
        """One line: the duration, what bounds it, and what is missing."""
        at_least = "" if self.complete else "at least "
        line = f"{at_least}{duration(self.seconds)}, bounded by {self.bound.name}"
        if self.missing:
            line += "; no measurement for " + ", ".join(f"{t.type} on {self.host.device}" for t in self.missing)
        return line

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": {"device": self.host.device, "gpus": self.host.gpus, "threads": self.host.threads,
                     "hosts": self.host.hosts, "devices": self.host.devices, "read_rate": self.host.read_rate,
                     "write_rate": self.host.write_rate, "tensor_cache": self.host.tensor_cache,
                     "shard_bytes": self.host.shard_bytes},
            "files": [round(f, 1) for f in self.files],
            "stages": {s.name: {"seconds": round(s.seconds, 1), "detail": s.detail} for s in self.stages},
            "bound": self.bound.name,
            "seconds": round(self.seconds, 1),
            "complete": self.complete,
            "types": {t.type: {"tensors": t.tensors, "weights": t.weights,
                               "weights_per_s": None if t.rate is None else t.rate.weights_per_s,
                               "device_seconds": None if t.seconds is None else round(t.seconds, 1),
                               "measured": "no measurement" if t.rate is None else t.rate.describe(),
                               "command": None if t.rate is None else t.rate.command}
                      for t in self.types},
            "disk": {"source_bytes": self.disk.source_bytes, "output_bytes": self.disk.output_bytes,
                     "tensor_cache_bytes": self.disk.tensor_cache_bytes, "free_bytes": self.disk.free_bytes},
            "source": self.source_note,
            "split": self.split_note,
        }

    files: tuple[float, ...] = ()  # each split file's codec seconds on one device

    @property
    def split_note(self) -> str:
        """How the job is shared among devices: one shard job per split file (registry.shards)."""
        if self.host.devices == 1:
            return ""
        if len(self.files) < 2:
            return (f"one file: one job on one device of {self.host.devices} (set a shard size, DSQ_SHARD_BYTES, "
                    "to split it into shard jobs)")
        used = min(len(self.files), self.host.devices)
        return (f"{len(self.files)} files of at most {_gb(self.host.shard_bytes)}, one shard job each, largest "
                f"first on {used} of {self.host.devices} devices; the largest file takes {duration(max(self.files))}")


def estimate(tensors: Iterable[Any], output_bytes: int, read_bytes: int, host: Host,
             table: "ThroughputTable | None" = None, *, source_note: str = "") -> Estimate:
    """Stage times and disk needs of converting `tensors` (objects with .type and .n_elements, as
    quant.planner.Plan.tensors) into a GGUF of output_bytes from read_bytes read off disk."""
    table = table if table is not None else ThroughputTable.load()
    counts: dict[str, list[int]] = {}
    for t in tensors:
        row = counts.setdefault(t.type, [0, 0])
        row[0] += 1
        row[1] += t.n_elements
    threads = host.threads if host.device == "cpu" else None
    types = tuple(TypeTime(q, n, w, table.rate(q, host.device, threads)) for q, (n, w) in sorted(counts.items()))
    device_s = sum(t.seconds for t in types if t.seconds is not None)
    files = tuple(file_seconds(tensors, host, table)) if host.shard_bytes else (device_s,)
    codec_s = schedule(files, host.devices)
    measured_w = sum(t.weights for t in types if t.rate is not None)
    written = output_bytes * (2 if host.tensor_cache else 1)
    stages = (
        Stage("read", read_bytes / (host.read_rate * host.hosts),
              f"{_gb(read_bytes)} at {_rate(host.read_rate)} x {host.hosts} host(s)"),
        Stage("codec", codec_s,
              f"{measured_w / 1e9:.1f} B weights, {duration(device_s)} on one device; {len(files)} file(s) "
              f"on {host.devices} device(s)"),
        Stage("write", written / (host.write_rate * host.hosts),
              f"{_gb(written)} ({'output + tensor cache' if host.tensor_cache else 'output'}) at "
              f"{_rate(host.write_rate)} x {host.hosts} host(s)"),
    )
    disk = DiskNeeds(read_bytes, output_bytes, output_bytes if host.tensor_cache else 0)
    return Estimate(host, stages, types, disk, source_note, files)


def file_seconds(tensors: Iterable[Any], host: Host, table: ThroughputTable) -> list[float]:
    """Codec seconds on one device of each file of the split (quant.gguf_file.plan_shards' rule);
    tensors of unmeasured types count zero."""
    from quant.gguf_file import plan_shards

    tensors = list(tensors)
    threads = host.threads if host.device == "cpu" else None
    out = []
    for shard in plan_shards(tensors, host.shard_bytes):
        seconds = 0.0
        for t in shard:
            rate = table.rate(t.type, host.device, threads)
            seconds += t.n_elements / rate.weights_per_s if rate is not None else 0.0
        out.append(seconds)
    return out


def schedule(files: "Iterable[float]", devices: int) -> float:
    """How long `devices` take over jobs of these lengths handed out largest first, each to the device
    free first (as the shard messages leave the queue): the busiest device's total."""
    load = [0.0] * max(1, devices)
    for seconds in sorted(files, reverse=True):
        i = load.index(min(load))
        load[i] += seconds
    return max(load)


def estimate_plan(plan: Any, read_bytes: int, host: Host, table: "ThroughputTable | None" = None,
                  *, source_note: str = "") -> Estimate:
    """estimate() of a quant.planner.Plan."""
    return estimate(plan.tensors, plan.total_bytes, read_bytes, host, table, source_note=source_note)


# -- source bytes from config.json ----------------------------------------------------------------

#: DeepSeek's FP8 checkpoints store linear weights as float8 e4m3 with one float32 scale
#: (weight_scale_inv) per 128x128 block; embeddings, the output head, norms and routers stay BF16.
FP8_BLOCK = (128, 128)


def source_dtype(config: dict[str, Any]) -> str:
    """FP8 for a config with an fp8 quantization_config, else its torch_dtype (BF16 when absent)."""
    qc = config.get("quantization_config") or {}
    if qc.get("quant_method") == "fp8":
        return "FP8"
    return {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}.get(config.get("torch_dtype", ""), "BF16")


def source_bytes(config: dict[str, Any], dtype: "str | None" = None) -> "tuple[int, str]":
    """(bytes the reader pulls, how they were counted) for the tensors the GGUF is made of.

    Counted from config.json over the GGUF's tensor list (tensors the converter drops, such as
    DeepSeek-V3's multi-token-prediction block, are never read); the checkpoint on disk is larger
    by what it drops. FP8: quantizable weights other than the embeddings and output head 1 byte
    plus a 4-byte scale per 128x128 block, the rest BF16; V4's routed experts MXFP4 (half a byte,
    plus a 1-byte scale per 32)."""
    dtype = (dtype or source_dtype(config)).upper()
    width = {"F32": 4, "BF16": 2, "F16": 2}
    arch = architectures.gguf_arch(config)
    specs = architectures.tensor_specs(config)
    if dtype in width:
        return sum(math.prod(s) for _, s in specs) * width[dtype], f"{dtype}, every tensor"
    if dtype != "FP8":
        raise EstimateError(f"unknown source dtype {dtype!r}")
    block = tuple((config.get("quantization_config") or {}).get("weight_block_size") or FP8_BLOCK)
    total = 0
    for name, shape in specs:
        n = math.prod(shape)
        if name.endswith("exp_probs_b.bias"):  # the router's e_score_correction_bias: float32
            total += 4 * n
        elif not is_quantizable(name, shape) or name.startswith(("token_embd.", "output.")):
            total += 2 * n
        elif arch == "deepseek4" and "_exps." in name:
            total += n // 2 + n // 32
        else:
            matrices = math.prod(shape[:-2])
            scales = math.ceil(shape[-2] / block[0]) * math.ceil(shape[-1] / block[1])
            total += n + 4 * matrices * scales
    return total, "FP8 with 128x128 float32 scales, embeddings/head/norms BF16 (counted from config.json)"


# -- formatting ------------------------------------------------------------------------------------


def duration(seconds: float) -> str:
    """12 s, 7 min 5 s, 2 h 03 min."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def _rate(bytes_per_s: float) -> str:
    return f"{bytes_per_s / 2**30:.3g} GiB/s"
