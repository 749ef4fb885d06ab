"""The imatrix job: llama.cpp's llama-imatrix on the checkpoint's reference GGUF over a calibration dataset.

The reference variant (F16, or Q8_0 for the 671B models) is the one tier-1 benchmarks measure against,
built here first when missing (workers.benchmark.reference_variant). The file is written in
`work/imatrix-<job>/`, its coverage read (quant.imatrix.coverage), then moved to
`imatrices/<checkpoint>/<job>-<sha256[:12]>.gguf` and registered (registry.imatrices.record).
A cancelled or failed run leaves no work files behind; a retry starts the tool again from the first chunk
(llama-imatrix's periodic snapshots are written mid-pass, some tensors ahead of others, so resuming from
one would not give the same sums).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from django.conf import settings

from quant.progress import Cancelled
from registry import calibration, jobs
from registry.imatrices import record
from registry.models import ImatrixJob
from workers import hosts, storage
from workers.context import JobContext, PermanentError, wait_for_database


def llama_imatrix_binary() -> "Path | None":
    """DSQ_LLAMA_IMATRIX, else `llama-imatrix` on PATH; None when neither."""
    if settings.DSQ_LLAMA_IMATRIX:
        return Path(settings.DSQ_LLAMA_IMATRIX)
    found = shutil.which("llama-imatrix")
    return Path(found) if found else None


def requirements(job: ImatrixJob) -> dict:
    """Nothing beyond a worker of the queue: the reference GGUF is built (and sized) by the quantize path."""
    return {}


def run(job: ImatrixJob, ctx: JobContext) -> dict:
    from quant.hashing import file_sha256
    from quant.imatrix import ImatrixError, coverage
    from quant.llama_imatrix import ImatrixSettings, run_llama_imatrix
    from workers.benchmark import reference_variant

    binary = llama_imatrix_binary()
    if binary is None:  # another worker may have it: not permanent
        raise FileNotFoundError("no llama-imatrix on this worker: set DSQ_LLAMA_IMATRIX or put it on PATH")
    try:
        text = calibration.check_stored(job.dataset)
    except (OSError, ValueError) as exc:
        raise PermanentError(f"calibration dataset {job.dataset.name}: {exc}") from None
    reference = reference_variant(job.checkpoint, ctx)
    model = storage.first_file(reference)
    work = storage.work_dir(f"imatrix-{job.pk}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        out = work / "imatrix.gguf"
        gpus = hosts.gpu_indices()
        im_settings = ImatrixSettings(n_ctx=job.n_ctx, chunks=job.chunks,
                                      n_gpu_layers=999 if gpus and settings.DSQ_DEVICE.startswith("cuda") else 0)
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": hosts.cuda_visible_devices(gpus)} if gpus else None
        ctx.progress(0.0, step=f"imatrix on {reference}")
        argv = run_llama_imatrix(binary, model, text, out, im_settings, log_path=work / "llama-imatrix.log",
                                 reporter=ctx, env=env)
        ctx.log("ran: " + " ".join(Path(a).name if os.sep in a else a for a in argv))
        try:
            cov = coverage(out).as_dict()
        except ImatrixError as exc:
            raise RuntimeError(f"llama-imatrix wrote a file dsq cannot read: {exc}") from None
        # llama-imatrix names the dataset by the path it read: keep the registry's name instead of a server path
        cov["datasets"] = [job.dataset.name]
        sha = file_sha256(out)
        relative = Path("imatrices") / job.checkpoint.name / f"{job.pk}-{sha[:12]}.gguf"
        final = storage.storage_root() / relative
        ctx.log(f"imatrix {sha[:12]}: {cov['chunk_count']} chunks of {cov['chunk_size']} tokens, "
                f"{cov['experts_never_routed']} experts never routed")
        wait_for_database()
        if jobs.is_cancel_requested(job):  # asked while the tool was finishing: keep and record nothing
            raise Cancelled(f"imatrix job {job.pk} cancelled")
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(out, final)
        try:
            artifact = record(job, storage_path=str(relative), size=final.stat().st_size, sha256=sha,
                              coverage=cov, reference=reference)
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        if artifact.storage_path != str(relative):  # an earlier attempt of the same inputs recorded its own file
            final.unlink(missing_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"artifact": artifact}
