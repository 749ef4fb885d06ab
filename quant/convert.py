"""Streaming conversion: HF safetensors (or a float GGUF) -> quantized GGUF, tensor by tensor.

read headers -> adapt names/shapes (quant.adapters) -> types and byte sizes (quant.planner's
plan_tensor, as `dsq plan` decides them) -> plan (tensor infos, metadata, shards) -> stream
each tensor's rows through kernels.quantize into temporary files -> verify them with
gguf.GGUFReader -> rename to the final names.

Memory stays bounded by a few slabs of rows, not the model: sources are read a slab at a
time (adapters) by a reader thread, quantized on the calling thread and written by a writer
thread (quant.pipeline: bounded queues, the three overlap), and files are written
sequentially (their sha256 is computed on the way out). The files grow in a partial-output
directory (quant.partial) with a journal of finished tensors, so a killed run's successor
resumes where it stopped; a failure or cancellation deletes the partial output; nothing is
left half-written under the final names.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import gguf
import numpy as np
import torch

import kernels
from quant import recipes as recipes_mod
from quant import pipeline
from quant.adapters import SLAB_WEIGHTS, Adapter, GGUFPassthrough, OutTensor, Slab, adapter_for
from quant.gguf_file import (
    KV,
    GGUFFileWriter,
    TensorInfo,
    kvs_from_writer,
    plan_shards,
    reader_kvs,
    shard_name,
    split_kvs,
)
from quant.hashing import file_sha256
from quant.imatrix import Imatrix, load_imatrix
from quant.partial import PartialOutput
from quant.progress import Cancelled, Progress, Reporter, check_cancelled
from quant.planner import plan_tensor
from quant.sources import GGUFSource, HFSource, open_source

FLOAT_TYPES = ("F32", "F16", "BF16")


class ConversionCancelled(Cancelled):
    """Raised when the reporter asks to stop; temporaries are gone by then."""


class ConversionError(RuntimeError):
    """The conversion cannot go on (bad weights, a bad output name, a failed check); the
    message names the tensor, its source tensors and file where there are any."""


def check_stem(stem: str) -> str:
    """The output file stem must be a plain name: "../x" or "a/b" would write outside the
    output directory, a leading dot would hide the file (and could collide with our
    ".dsq-partial-*" directories), and control characters have no place in a file name."""
    if (not stem or stem.startswith(".") or "/" in stem or "\\" in stem
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in stem)):
        raise ConversionError(f"output name {stem!r} must be a plain file name (no '/', '\\', leading '.' or control characters)")
    return stem


# -- recipes ---------------------------------------------------------------------------------------


def resolve_recipe(recipe: Any):
    """A recipe object, a built-in name, or a path to a recipe JSON file.

    F32/F16/BF16 are trivial recipes (everything llama.cpp quantizes in that type, the rest
    F32) when the built-in table does not define them."""
    if not isinstance(recipe, (str, Path)):
        return recipe
    p = Path(recipe)
    if str(recipe).endswith(".json") and p.is_file():
        return recipes_mod.load_recipe(p)
    try:
        return recipes_mod.get_recipe(str(recipe))
    except recipes_mod.RecipeError:
        if str(recipe).upper() in FLOAT_TYPES:
            t = str(recipe).upper()
            return recipes_mod.parse_recipe({"name": t, "default_type": t, "description": f"every quantizable tensor in {t}"})
        raise


def file_type_of(recipe_name: str, types: dict[str, int]) -> int:
    """general.file_type: the llama_ftype named like the recipe (its DQ/-dense variants
    included: DQ3_K_M -> Q3_K_M), else that of the quantized type holding most weights."""
    name = recipe_name.upper().replace("-", "_")
    if name == "F32":
        return int(gguf.LlamaFileType.ALL_F32)
    base = name.removesuffix("_DENSE")
    for cand in (name, base, base[1:] if base.startswith("D") else base):
        if f"MOSTLY_{cand}" in gguf.LlamaFileType.__members__:
            return int(gguf.LlamaFileType[f"MOSTLY_{cand}"])
    quantized = {t: n for t, n in types.items() if t not in FLOAT_TYPES}
    if not quantized:
        return int(gguf.LlamaFileType.MOSTLY_F16 if types.get("F16") else gguf.LlamaFileType.ALL_F32)
    top = max(quantized, key=quantized.get)
    by_type = {"Q2_K": "MOSTLY_Q2_K", "Q3_K": "MOSTLY_Q3_K_M", "Q4_K": "MOSTLY_Q4_K_M", "Q5_K": "MOSTLY_Q5_K_M"}
    return int(gguf.LlamaFileType[by_type.get(top, f"MOSTLY_{top}")])


# -- results and progress -----------------------------------------------------------------------------


@dataclass
class TensorResult:
    name: str
    shape: tuple[int, ...]
    type: str
    nbytes: int
    file_index: int
    rmse: float = 0.0
    rel_error: float = 0.0  # ||w - q|| / ||w||
    sqnr_db: float = math.inf  # 10 log10(sum w^2 / sum (w - q)^2)
    max_abs_error: float = 0.0


@dataclass
class FileResult:
    path: Path
    size: int
    sha256: str
    n_tensors: int


@dataclass
class ConversionResult:
    files: list[FileResult]
    tensors: list[TensorResult]
    recipe_name: str
    recipe_sha256: str
    arch: str
    n_params: int
    total_bytes: int  # tensor data bytes
    seconds: float
    imatrix: "str | None" = None
    resumed: int = 0  # tensors kept from a killed run's partial output
    stale: list[str] = field(default_factory=list)  # stale partial output found (and removed or left)

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.total_bytes / max(1, self.n_params)

    def types(self) -> dict[str, str]:
        return {t.name: t.type for t in self.tensors}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bits_per_weight"] = self.bits_per_weight
        for f in d["files"]:
            f["path"] = str(f["path"])
        for t in d["tensors"]:
            if math.isinf(t["sqnr_db"]):
                t["sqnr_db"] = None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ConversionResult":
        """The inverse of to_dict (a shard job's stored result)."""
        fields = {k: v for k, v in d.items() if k != "bits_per_weight"}
        fields["files"] = [FileResult(**dict(f, path=Path(f["path"]))) for f in d["files"]]
        fields["tensors"] = [TensorResult(**dict(t, shape=tuple(t["shape"]),
                                                 sqnr_db=math.inf if t["sqnr_db"] is None else t["sqnr_db"]))
                             for t in d["tensors"]]
        return cls(**fields)

    @classmethod
    def combine(cls, parts: "Sequence[ConversionResult]") -> "ConversionResult":
        """The result of a whole run from those of its files written alone (execute(only_file=…)),
        in file order; `seconds` adds up the parts' time (work done, not wall time)."""
        first = parts[0]
        return cls(files=[f for p in parts for f in p.files], tensors=[t for p in parts for t in p.tensors],
                   recipe_name=first.recipe_name, recipe_sha256=first.recipe_sha256, arch=first.arch,
                   n_params=sum(p.n_params for p in parts), total_bytes=sum(p.total_bytes for p in parts),
                   seconds=sum(p.seconds for p in parts), imatrix=first.imatrix,
                   resumed=sum(p.resumed for p in parts), stale=[s for p in parts for s in p.stale])


@dataclass
class PlannedTensor:
    """One tensor of a conversion: the planner's verdict (info: quant.planner.plan_tensor, the
    decision `dsq plan` makes too), where its rows come from (out) and the file it goes to."""

    out: OutTensor
    info: TensorInfo
    file_index: int = 0


@dataclass
class ConversionPlan:
    source: "HFSource | GGUFSource"
    arch: str
    recipe: Any
    tensors: list[PlannedTensor]
    kvs: list[KV]
    shards: list[list[TensorInfo]]
    stem: str
    imatrix: "Imatrix | None" = None

    @property
    def total_bytes(self) -> int:
        return sum(t.info.nbytes for t in self.tensors)

    @property
    def n_params(self) -> int:
        return sum(t.out.n_elements for t in self.tensors)

    def file_names(self) -> list[str]:
        return [shard_name(self.stem, i, len(self.shards)) for i in range(len(self.shards))]

    def fingerprint(self) -> str:
        """What these bytes are made from: the recipe, the tensor list, and the source and imatrix
        files (name, size, modification time). A tensor cache made for another fingerprint is stale."""
        h = hashlib.sha256(self.recipe.sha256.encode())
        for t in self.tensors:
            h.update(f"{t.info.name}|{t.info.type}|{list(t.info.shape)}\n".encode())
        paths = [Path(self.source.path)]
        if self.imatrix is not None and self.imatrix.path:
            paths.append(Path(self.imatrix.path))
        for root in paths:
            files = sorted(root.iterdir()) if root.is_dir() else [root]
            for f in (f for f in files if f.is_file()):
                st = f.stat()
                h.update(f"{f.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return h.hexdigest()

    def output_key(self) -> str:
        """What the output files' bytes are made from: the fingerprint plus the file layout and
        the key/values. A killed run's partial output is resumed only under the same key."""
        h = hashlib.sha256(self.fingerprint().encode())
        for name, shard in zip(self.file_names(), self.shards):
            h.update(f"{name}|{[t.name for t in shard]}\n".encode())
        for kv in self.kvs:
            h.update(f"{kv.key}|{int(kv.type)}|{kv.sub_type}|{kv.value!r}\n".encode())
        return h.hexdigest()

    def describe(self) -> str:
        lines = [f"{self.arch}: {len(self.tensors)} tensors, {self.n_params:,} weights -> "
                 f"{self.total_bytes / 2**20:.1f} MiB ({8 * self.total_bytes / max(1, self.n_params):.3f} bpw) "
                 f"in {len(self.shards)} file(s)"]
        for t in self.tensors:
            lines.append(f"  {t.info.name:40s} {str(list(t.info.shape)):24s} {t.info.type:6s} {t.info.nbytes:>12,}")
        return "\n".join(lines)


def hf_cache_origin(path: Path) -> "tuple[str | None, str | None]":
    """(repo, revision) of a directory inside the Hugging Face cache
    (``.../models--org--name/snapshots/<commit>``), else (None, None)."""
    parts = path.resolve().parts
    for i, part in enumerate(parts[:-2]):
        if part.startswith("models--") and parts[i + 1] == "snapshots":
            return part[len("models--"):].replace("--", "/"), parts[i + 2]
    return None, None


def _model_facts(arch: str, kv: dict[str, Any], tied: bool) -> recipes_mod.ModelFacts:
    """What recipe conditions may ask about, read from the file's own key/values (a GGUF source
    has no config.json; quant.architectures.model_facts is the config's twin)."""
    return recipes_mod.ModelFacts(
        arch=arch,
        n_head=kv.get(f"{arch}.attention.head_count"),
        n_head_kv=kv.get(f"{arch}.attention.head_count_kv"),
        n_expert=kv.get(f"{arch}.expert_count", 0) or 0,
        tied_embeddings=tied,
    )


def plan_conversion(
    src_path: "str | Path",
    recipe: Any,
    *,
    imatrix: "str | Path | Imatrix | None" = None,
    shard_size: "int | None" = None,
    name: "str | None" = None,
    source_repo: "str | None" = None,
    source_revision: "str | None" = None,
    tokenizer_pre: "str | None" = None,
    allow_requantize: bool = False,
) -> ConversionPlan:
    """Everything but the data: tensors, types, byte sizes, metadata, shard layout."""
    recipe = resolve_recipe(recipe)
    src = open_source(src_path, allow_requantize=allow_requantize)
    if source_repo is None and source_revision is None:
        source_repo, source_revision = hf_cache_origin(Path(src_path))
    imat = load_imatrix(imatrix) if isinstance(imatrix, (str, Path)) else imatrix

    if isinstance(src, GGUFSource):
        adapter: "Adapter | GGUFPassthrough" = GGUFPassthrough(src)
        arch = adapter.arch_name
        drop = {
            "general.file_type", "general.quantization_version",
            gguf.Keys.Split.LLM_KV_SPLIT_NO, gguf.Keys.Split.LLM_KV_SPLIT_COUNT, gguf.Keys.Split.LLM_KV_SPLIT_TENSORS_COUNT,
        }
        base_kvs = [kv for kv in reader_kvs(src.reader, skip=drop) if not kv.key.startswith(("dsq.recipe.", "quantize.imatrix."))]
        stem_default = Path(src_path).stem.split("-00001-of-")[0]
    else:
        adapter = adapter_for(src, tokenizer_pre)
        arch = adapter.arch_name
        collector = gguf.GGUFWriter(None, arch)  # used only as a typed key/value builder
        adapter.add_metadata(collector)
        adapter.add_tokenizer(collector)
        base_kvs = kvs_from_writer(collector)
        stem_default = Path(src_path).name
    kv_values = {kv.key: kv.value for kv in base_kvs}
    n_layer = int(kv_values.get(f"{arch}.block_count", 0))

    check_stem(name or f"{stem_default}-{recipe.name}")
    outs = adapter.plan()
    tied = not any(t.name == "output.weight" for t in outs)
    facts = _model_facts(arch, kv_values, tied)
    planned: list[PlannedTensor] = []
    for t in outs:
        info = plan_tensor(recipe, t.name, t.shape, n_layer, facts, source_type=t.source_type)
        stored = t.raw is not None and t.source_type == info.type  # written as stored, no codec needed
        if info.type not in kernels.TYPES and not stored:
            raise ConversionError(f"{t.name}: recipe type {info.type} is not supported by the kernels")
        if imat is not None and info.type not in FLOAT_TYPES:
            imat.fits(t.name, t.shape[-1], t.shape[0] if len(t.shape) == 3 else 1)  # a mismatch fails here, not mid-file
        planned.append(PlannedTensor(t, info))

    type_weights: dict[str, int] = {}
    for p in planned:
        type_weights[p.info.type] = type_weights.get(p.info.type, 0) + p.out.n_elements

    extra = [
        KV("general.quantization_version", gguf.GGUFValueType.UINT32, gguf.GGML_QUANT_VERSION),
        KV("general.file_type", gguf.GGUFValueType.UINT32, file_type_of(recipe.name, type_weights)),
        KV("dsq.recipe.name", gguf.GGUFValueType.STRING, recipe.name),
        KV("dsq.recipe.version", gguf.GGUFValueType.UINT32, int(getattr(recipe, "version", 1))),
        KV("dsq.recipe.sha256", gguf.GGUFValueType.STRING, recipe.sha256),
    ]
    if source_repo:
        extra.append(KV("dsq.source.repo", gguf.GGUFValueType.STRING, source_repo))
    if source_revision:
        extra.append(KV("dsq.source.revision", gguf.GGUFValueType.STRING, source_revision))
    if imat is not None:
        # what llama-quantize records about its --imatrix
        if imat.path is not None:
            extra.append(KV("quantize.imatrix.file", gguf.GGUFValueType.STRING, str(imat.path)))
        if imat.datasets:
            extra.append(KV("quantize.imatrix.dataset", gguf.GGUFValueType.STRING, imat.datasets[0]))
        extra.append(KV("quantize.imatrix.entries_count", gguf.GGUFValueType.INT32, len(imat.data)))
        if imat.chunk_count > 0:
            extra.append(KV("quantize.imatrix.chunks_count", gguf.GGUFValueType.INT32, imat.chunk_count))
    keys = {kv.key for kv in extra}
    kvs = [kv for kv in base_kvs if kv.key not in keys] + extra

    shards = plan_shards([p.info for p in planned], shard_size)
    index_of = {info.name: i for i, shard in enumerate(shards) for info in shard}
    for p in planned:
        p.file_index = index_of[p.info.name]
    stem = name or f"{stem_default}-{recipe.name}"
    return ConversionPlan(src, arch, recipe, planned, kvs, shards, stem, imat)


# -- streaming ----------------------------------------------------------------------------------------


class _ErrorStats:
    def __init__(self) -> None:
        self.err2 = 0.0
        self.sig2 = 0.0
        self.n = 0
        self.max_abs = 0.0

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if not x.numel():
            return
        d = (x - y).reshape(-1)
        xf = x.reshape(-1)
        self.err2 += float(torch.dot(d, d))
        self.sig2 += float(torch.dot(xf, xf))
        self.n += x.numel()
        self.max_abs = max(self.max_abs, float(d.abs().max()))

    def fill(self, r: TensorResult) -> None:
        if self.n == 0:
            return
        r.rmse = math.sqrt(self.err2 / self.n)
        r.rel_error = math.sqrt(self.err2 / self.sig2) if self.sig2 > 0 else (0.0 if self.err2 == 0 else math.inf)
        r.sqnr_db = 10 * math.log10(self.sig2 / self.err2) if self.err2 > 0 else math.inf
        r.max_abs_error = self.max_abs


def _device(device: "str | None") -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConversionError("--device cuda asked for, but torch sees no CUDA device")
    return dev


def verify_file(path: Path, infos: Sequence[TensorInfo], n_split: int, split_index: int) -> None:
    """Re-read a written file: every tensor's name, type, shape and size as planned."""
    r = gguf.GGUFReader(path)
    if len(r.tensors) != len(infos):
        raise ConversionError(f"{path.name}: {len(r.tensors)} tensors, planned {len(infos)}")
    for t, info in zip(r.tensors, infos):
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        if t.name != info.name or t.tensor_type.name != info.type or shape != info.shape or int(t.n_bytes) != info.nbytes:
            raise ConversionError(
                f"{path.name}: tensor {t.name} {t.tensor_type.name} {shape} {int(t.n_bytes)}B, "
                f"planned {info.name} {info.type} {info.shape} {info.nbytes}B"
            )
    if n_split > 1:
        got = r.fields[gguf.Keys.Split.LLM_KV_SPLIT_NO].contents(), r.fields[gguf.Keys.Split.LLM_KV_SPLIT_COUNT].contents()
        if got != (split_index, n_split):
            raise ConversionError(f"{path.name}: split keys {got}, expected {(split_index, n_split)}")


def execute(
    plan: ConversionPlan,
    out_dir: "str | Path",
    *,
    device: "str | None" = "cpu",
    reporter: "Reporter | None" = None,
    stats: bool = True,
    slab_weights: int = SLAB_WEIGHTS,
    tensor_cache_dir: "str | Path | None" = None,
    resume: bool = True,
    only_file: "int | None" = None,
) -> ConversionResult:
    """Write the plan's files into out_dir (with `only_file`, only that file of a split plan).

    Reading, quantizing and writing overlap (quant.pipeline): a reader thread prepares the
    next slab of rows while the codec quantizes one and a writer thread writes and hashes the
    previous one (the file's sha256 is computed on the way out, once).

    The files grow in ``out_dir/.dsq-partial-<stem>-<key>/`` (quant.partial), with a journal
    of finished tensors. With `resume` (the default), a run of the same plan after a killed
    one (SIGKILL, a crash, Ctrl-C) keeps the tensors the killed run finished and produces the
    same bytes as an uninterrupted run; stale partial output of the same name made for
    another plan is removed, other stale output is reported (ConversionResult.stale). An
    error or a cancellation removes the partial output.

    With `tensor_cache_dir`, every finished tensor's bytes are also kept there
    (`<i>-<name>-<type>.bin`, written atomically, with a `.json` sidecar holding its sha256 and
    error stats); a later run with the same plan and directory reuses every cached tensor whose
    checksum still matches instead of quantizing it again (how a job resumes on another worker).

    `only_file` i writes the plan's i-th file alone, byte for byte the file a whole run writes:
    each split file is a tensor range with its own header, so one shard job per file can make a
    split variant on many workers at once (workers/quantize.py)."""
    out_dir = Path(out_dir)
    cache = Path(tensor_cache_dir) if tensor_cache_dir is not None else None
    if cache is not None:
        _claim_cache(cache, plan.fingerprint())
    dev = _device(device)
    t_start = time.monotonic()
    n_files = len(plan.shards)
    names = plan.file_names()
    if only_file is None:
        first, end, stem = 0, n_files, plan.stem
    elif 0 <= only_file < n_files:
        first, end, stem = only_file, only_file + 1, names[only_file].removesuffix(".gguf")
    else:
        raise ConversionError(f"file {only_file} asked for; the plan has {n_files} file(s)")
    todo = [(i, p) for i, p in enumerate(plan.tensors, 1) if first <= p.file_index < end]
    partial = PartialOutput(out_dir, stem, plan.output_key(), resume=resume)
    tmp_dir = partial.path
    n_tensors = len(plan.tensors)

    # what a killed run finished: the longest prefix of the plan its journal vouches for
    results: list[TensorResult] = []
    for entry, (i, p) in zip(partial.entries(), todo):
        if (entry.get("i"), entry.get("name"), entry.get("type"), entry.get("file")) != (i, p.info.name, p.info.type, p.file_index):
            break
        results.append(_result_from(entry, p))
    kept = len(results)
    partial.keep(kept)
    done_in_file = [0] * n_files
    for r in results:
        done_in_file[r.file_index] += 1

    writers: list[GGUFFileWriter] = []
    files: list[FileResult] = []
    bytes_total = sum(p.info.nbytes for _, p in todo)
    state = {"done": 0, "file": first - 1, "sink": None}
    remove = True
    try:
        def advance(fi: int) -> GGUFFileWriter:
            """The writer of file fi, closing (and opening, if all their tensors were kept) those before it."""
            while state["file"] < fi:
                if state["file"] >= first:
                    size, sha = writers[-1].close()
                    files.append(FileResult(out_dir / names[state["file"]], size, sha, len(plan.shards[state["file"]])))
                state["file"] += 1
                f = state["file"]
                if f >= end:
                    break
                kvs = (plan.kvs if f == 0 else []) + (split_kvs(f, n_files, n_tensors) if n_files > 1 else [])
                w = GGUFFileWriter(tmp_dir / names[f], kvs, plan.shards[f])
                writers.append(w)
                if done_in_file[f]:
                    state["done"] += w.resume(done_in_file[f])
                else:
                    w.write_header()
            return writers[-1]

        # the kept tensors' bytes are re-read and hashed here, before anything new is written
        for f in range(first, end):
            if done_in_file[f]:
                advance(f)
        if kept and reporter is not None:
            index, last = todo[kept - 1]
            reporter.report(_progress(index, plan, last, state["done"], bytes_total, t_start, True,
                                      f"resumed: {kept} of {len(todo)} tensors kept from a killed run"))

        def produce() -> Iterator[tuple]:
            for i, p in todo[kept:]:
                hit = _cached_tensor(cache, i, p.info) if cache is not None else None
                if hit is not None:
                    yield ("cached", i, p, hit)
                    continue
                yield ("begin", i, p, None)
                for piece in _read_tensor(plan, p, slab_weights):
                    yield ("piece", i, p, piece)
                yield ("end", i, p, None)

        est = _ErrorStats()
        codec_done = [state["done"]]

        def transform(item: tuple) -> tuple:
            nonlocal est
            kind, i, p, payload = item
            if kind in ("begin", "cached"):
                check_cancelled(reporter, f"cancelled before tensor {i} of {n_tensors} ({p.info.name})",
                                ConversionCancelled)
            if kind == "begin":
                est = _ErrorStats()
                return item
            if kind == "cached":
                res = TensorResult(p.info.name, p.info.shape, p.info.type, p.info.nbytes, p.file_index)
                _stats_from(payload[1], res)
                codec_done[0] += p.info.nbytes
                _report(reporter, i, plan, p, codec_done[0], bytes_total, t_start, True)
                return ("cached", i, p, (payload[0], res))
            if kind == "piece":
                data = _quantize_piece(plan, p, payload, dev, est if stats else None)
                codec_done[0] += len(data)
                check_cancelled(reporter, f"cancelled inside tensor {i} of {n_tensors} ({p.info.name})",
                                ConversionCancelled)
                _report(reporter, i, plan, p, codec_done[0], bytes_total, t_start, False)
                return ("bytes", i, p, data)
            res = TensorResult(p.info.name, p.info.shape, p.info.type, p.info.nbytes, p.file_index)
            est.fill(res)
            _report(reporter, i, plan, p, codec_done[0], bytes_total, t_start, True)
            return ("end", i, p, res)

        def consume(item: tuple) -> None:
            kind, i, p, payload = item
            if kind == "bytes":
                state["sink"].write(payload)
                return
            w = advance(p.file_index)
            if kind == "begin":
                w.begin_tensor(p.info.name)
                state["sink"] = _TensorCacheWriter(cache, i, p.info, w) if cache is not None else w
                return
            if kind == "cached":
                path, res = payload
                w.begin_tensor(p.info.name)
                _replay(path, w)
            else:
                res = payload
                if cache is not None:
                    state["sink"].commit(res)
            w.end_tensor()
            w.flush()
            partial.record(_entry(i, res))
            results.append(res)

        pipeline.run(produce(), transform, consume)
        advance(end)
        for fi in range(first, end):
            verify_file(tmp_dir / names[fi], plan.shards[fi], n_files, fi)
        for fi in range(first, end):
            os.replace(tmp_dir / names[fi], out_dir / names[fi])
    except KeyboardInterrupt:
        remove = False  # Ctrl-C: keep what is finished for the next run, as after a kill
        raise
    finally:
        for w in writers:
            w.abort()
        partial.release(remove=remove)
    return ConversionResult(
        files=files,
        tensors=results,
        recipe_name=plan.recipe.name,
        recipe_sha256=plan.recipe.sha256,
        arch=plan.arch,
        n_params=sum(p.out.n_elements for _, p in todo),
        total_bytes=bytes_total,
        seconds=time.monotonic() - t_start,
        imatrix=str(plan.imatrix.path) if plan.imatrix is not None and plan.imatrix.path else None,
        resumed=kept,
        stale=[s.describe() for s in partial.stale],
    )


_STAT_KEYS = ("rmse", "rel_error", "sqnr_db", "max_abs_error")


def _stats_from(d: dict, res: TensorResult) -> None:
    for key in _STAT_KEYS:
        value = d.get(key)
        setattr(res, key, math.inf if value is None and key == "sqnr_db" else (value or 0.0))


def _entry(i: int, res: TensorResult) -> dict:
    """The journal line of a finished tensor."""
    d = {"i": i, "name": res.name, "type": res.type, "file": res.file_index}
    for key in _STAT_KEYS:
        value = getattr(res, key)
        d[key] = None if math.isinf(value) else value
    return d


def _result_from(entry: dict, p: PlannedTensor) -> TensorResult:
    res = TensorResult(p.info.name, p.info.shape, p.info.type, p.info.nbytes, p.file_index)
    _stats_from(entry, res)
    return res


def _report(reporter, i, plan, p, done, total, t_start, finished) -> None:
    if reporter is not None and (finished or done < total):
        reporter.report(_progress(i, plan, p, done, total, t_start, finished))


# -- per-tensor cache (resumable jobs) ----------------------------------------------------------------


def _claim_cache(cache: Path, fingerprint: str) -> None:
    """Use `cache` for this plan: a cache left by another plan (other source files, recipe or
    imatrix) is emptied first, so stale bytes are never replayed."""
    stamp = cache / "PLAN"
    if cache.is_dir() and (not stamp.is_file() or stamp.read_text().strip() != fingerprint):
        shutil.rmtree(cache)
    cache.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint + "\n")


def _cache_stem(cache: Path, index: int, info: TensorInfo) -> Path:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in info.name)
    return cache / f"{index}-{safe}-{info.type}"


def _cached_tensor(cache: Path, index: int, info: TensorInfo) -> "tuple[Path, dict] | None":
    """The cached bytes of tensor `index` if present, complete and matching their checksum."""
    stem = _cache_stem(cache, index, info)
    data, meta = stem.with_suffix(".bin"), stem.with_suffix(".json")
    if not (data.is_file() and meta.is_file()) or data.stat().st_size != info.nbytes:
        return None
    try:
        sidecar = json.loads(meta.read_text())
    except ValueError:
        return None
    return (data, sidecar) if file_sha256(data) == sidecar.get("sha256") else None


def _replay(data: Path, w: GGUFFileWriter) -> int:
    n = 0
    with open(data, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            w.write(chunk)
            n += len(chunk)
    return n


class _TensorCacheWriter:
    """Passes a tensor's bytes to the GGUF writer and keeps a copy; commit() publishes it atomically."""

    def __init__(self, cache: Path, index: int, info: TensorInfo, w: GGUFFileWriter):
        self.stem = _cache_stem(cache, index, info)
        self.w = w
        self.tmp = self.stem.with_suffix(".bin.tmp")
        self.f = open(self.tmp, "wb")
        self.h = hashlib.sha256()

    def write(self, data: "bytes | memoryview") -> None:
        self.w.write(data)
        self.f.write(data)
        self.h.update(data)

    def commit(self, res: TensorResult) -> None:
        self.f.close()
        os.replace(self.tmp, self.stem.with_suffix(".bin"))
        meta = {"sha256": self.h.hexdigest(), "rmse": res.rmse, "rel_error": res.rel_error,
                "sqnr_db": None if math.isinf(res.sqnr_db) else res.sqnr_db, "max_abs_error": res.max_abs_error}
        tmp_meta = self.stem.with_suffix(".json.tmp")
        tmp_meta.write_text(json.dumps(meta))
        os.replace(tmp_meta, self.stem.with_suffix(".json"))


def _progress(index, plan, p, done, total, t_start, finished, message: str = "") -> Progress:
    """Step "quantize i/N"; the fraction counts output bytes; a finished tensor carries a log line."""
    elapsed = time.monotonic() - t_start
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else None
    n, item = len(plan.tensors), f"{p.info.name} {p.info.type}"
    line = message or (f"tensor {index}/{n} {item}" if finished else "")
    return Progress(f"quantize {index}/{n}", done / max(1, total), line, eta, index, n, item)


_TORCH_FLOAT = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def _what(src: "HFSource | GGUFSource", p: PlannedTensor) -> str:
    """'blk.0.attn_q.weight (from model.layers.0.self_attn.q_proj.weight in model-00001-of-00002.safetensors)'."""
    parts = []
    for name in p.out.sources[:3]:
        t = src.tensors.get(name)
        parts.append(f"{name} in {t.file.name}" if t is not None else name)
    more = f" and {len(p.out.sources) - 3} more" if len(p.out.sources) > 3 else ""
    return f"{p.info.name} (from {', '.join(parts)}{more})" if parts else p.info.name


def _read_tensor(plan: ConversionPlan, p: PlannedTensor, slab_weights: int) -> Iterator["bytes | Slab"]:
    """A tensor's input, a slab at a time (the reader stage): rows as a float32 Slab to quantize,
    or stored bytes to copy as they are (llama-quantize copies a tensor whose type does not change)."""
    info, out = p.info, p.out
    src = plan.source
    if out.source_type is not None and out.source_type == info.type and isinstance(src, GGUFSource):
        rows = math.prod(info.shape[:-1]) if len(info.shape) > 1 else 1
        step = max(1, slab_weights // info.shape[-1])
        for r0 in range(0, rows, step):
            data = src.raw_bytes(info.name, (r0, min(rows, r0 + step)))
            if info.type in FLOAT_TYPES:
                x = torch.frombuffer(bytearray(data), dtype=getattr(torch, _TORCH_FLOAT[info.type]))
                if not bool(torch.isfinite(x).all()):
                    raise ConversionError(f"{_what(src, p)}: the stored {info.type} values hold NaN or Inf")
            yield data
        return
    if out.raw is not None and out.source_type == info.type:
        # the stored blocks (DeepSeek-V4's MXFP4 experts, its I32 routing table; FP8 weights as the
        # converter's Q8_0), as llama-quantize copies a tensor whose type does not change
        yield from out.raw(slab_weights)
        return
    # slices with their own importance vectors are quantized one by one (_quantize_piece)
    rows_per_expert = info.shape[-2] if len(info.shape) == 3 and _importance(plan, info) is None else 0
    for slab in _joined(out.slabs(slab_weights), rows_per_expert, slab_weights):
        if slab.data.dtype != torch.float32:
            slab = Slab(slab.expert, slab.data.float(), slab.experts)
        yield slab


def _joined(slabs: Iterable[Slab], rows_per_expert: int, max_weights: int) -> Iterator[Slab]:
    """Consecutive whole 3-D slices joined into slabs of up to max_weights (rows_per_expert 0:
    none joined).

    Why: DeepSeek's attn_k_b/attn_v_b are 128 slices of 65,536 weights each. Quantized one
    by one, each is too small for the compiled kernels and the row threads (kernels.api
    runs small inputs eagerly on one thread), and they cost a quarter of a small model's
    time. Every codec quantizes rows independently, so joined slices give the same bytes."""
    held: list[Slab] = []
    weights = 0

    def flush() -> Iterator[Slab]:
        if len(held) == 1:
            yield held[0]
        elif held:
            yield Slab(held[0].expert, torch.cat([s.data for s in held]), len(held))
        held.clear()

    for slab in slabs:
        n = slab.data.numel()
        if not rows_per_expert or slab.data.shape[0] != rows_per_expert or n > max_weights:
            yield from flush()
            weights = 0
            yield slab
            continue
        if weights + n > max_weights:
            yield from flush()
            weights = 0
        held.append(slab)
        weights += n
    yield from flush()


# Error statistics are estimated from every STATS_ROW_STEP-th row of a slab (all rows of a slab
# shorter than 16 steps): dequantizing every row again cost as much as a third of the
# quantization itself, while the statistics (relative error, SQNR of a tensor) are means over
# thousands of rows that a 1/16 sample estimates within a fraction of a percent.
STATS_ROW_STEP = 16


def _importance(plan: ConversionPlan, info: TensorInfo) -> "torch.Tensor | None":
    """The imatrix's vectors for a quantized tensor ([n_mat, n_per_row]), None without data for it."""
    if plan.imatrix is None or info.type in FLOAT_TYPES:
        return None
    n_mat = info.shape[0] if len(info.shape) == 3 else 1
    return plan.imatrix.for_tensor(info.name, info.shape[-1], n_mat)


def _quantize_piece(plan: ConversionPlan, p: PlannedTensor, piece: "bytes | Slab", dev: torch.device, est) -> "bytes | memoryview":
    """The codec stage: a slab's bytes in the planned type, error statistics sampled on the way."""
    if not isinstance(piece, Slab):
        return piece
    info = p.info
    x = piece.data.to(dev)
    imat = _importance(plan, info)
    try:
        q = kernels.quantize(x, info.type, None if imat is None else imat[piece.expert])
    except ValueError as e:  # non-finite weights, or finite ones the type cannot hold
        bad, why = piece.expert, e
        if piece.experts > 1:  # joined slices (never with an importance matrix): name the one
            rows = x.shape[0] // piece.experts
            for k in range(piece.experts):
                try:
                    kernels.quantize(x[k * rows:(k + 1) * rows], info.type)
                except ValueError as err:
                    bad, why = piece.expert + k, err
                    break
        expert = f" expert {bad}" if len(info.shape) == 3 else ""
        raise ConversionError(f"{_what(plan.source, p)}{expert}: {why}") from None
    if est is not None:
        step = STATS_ROW_STEP if x.shape[0] >= 16 * STATS_ROW_STEP else 1
        xs = x[::step]
        if info.type == "F32":
            est.add(xs, xs)
        else:
            est.add(xs, kernels.dequantize(q[::step].contiguous(), info.type, info.shape[-1]))
    data = q.cpu().numpy()
    return memoryview(np.ascontiguousarray(data)).cast("B")


def convert(
    src_path: "str | Path",
    out_dir: "str | Path",
    recipe: Any,
    *,
    imatrix: "str | Path | Imatrix | None" = None,
    device: "str | None" = "cpu",
    shard_size: "int | None" = None,
    name: "str | None" = None,
    reporter: "Reporter | None" = None,
    source_repo: "str | None" = None,
    source_revision: "str | None" = None,
    tokenizer_pre: "str | None" = None,
    allow_requantize: bool = False,
    stats: bool = True,
    tensor_cache_dir: "str | Path | None" = None,
) -> ConversionResult:
    """Convert a checkpoint to GGUF with a recipe; see the module docstring."""
    plan = plan_conversion(
        src_path, recipe, imatrix=imatrix, shard_size=shard_size, name=name, source_repo=source_repo,
        source_revision=source_revision, tokenizer_pre=tokenizer_pre, allow_requantize=allow_requantize,
    )
    return execute(plan, out_dir, device=device, reporter=reporter, stats=stats, tensor_cache_dir=tensor_cache_dir)
