"""`dsq plan --estimate`: the time plan's table, its JSON, and the inputs it refuses."""
from __future__ import annotations

import contextlib
import io
import json

import pytest

from dsq import cli
from quant import estimate as est
from quant.configs import load_config
from quant.planner import plan

R1 = load_config("DeepSeek-R1")


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["plan", "--config", "DeepSeek-R1", *argv])
    return rc, out.getvalue(), err.getvalue()


def _stage_lines(out: str) -> dict[str, str]:
    return {line.split()[0]: line for line in out.splitlines() if line.split()[:1] in (["read"], ["codec"], ["write"])}


def test_it_prints_the_stages_the_bound_and_the_disk_for_one_8_gpu_host():
    rc, out, err = _run("--recipe", "DQ3_K_M", "--estimate", "--gpus", "8", "--read-rate", "2G", "--write-rate", "1G")
    assert rc == 0, err
    e = est.estimate_plan(plan(R1, "DQ3_K_M"), est.source_bytes(R1)[0], est.Host(gpus=8, shard_bytes=40 << 30))
    stages = _stage_lines(out)
    assert stages["codec"].endswith("<- bound") and "<- bound" not in stages["read"] + stages["write"]
    assert est.duration(e.stage("codec").seconds) in stages["codec"]
    assert "673.2 GB at 2 GiB/s x 1 host(s)" in stages["read"]
    assert "598.5 GB (output + tensor cache)" in stages["write"]
    assert "end to end: at least " in out and "bounded by codec" in out
    assert "F32     0.107 B weights  no measurement on cuda" in out
    assert "85.3 Mw/s" in out and "docs/gpu-check-h200.txt" in out  # the Q3_K row and where it comes from
    assert "8 files of at most 42.9 GB, one shard job each, largest first on 8 of 8 devices" in out
    assert "output 299.2 GB + tensor cache 299.2 GB: 598.6 GB free beside the source" in out
    assert "blk.3.ffn_down_exps.weight" not in out  # the time plan replaces the tensor list


def test_a_slow_disk_bounds_the_job_by_its_read():
    rc, out, _ = _run("--recipe", "DQ3_K_M", "--estimate", "--gpus", "8", "--read-rate", "200M")
    assert rc == 0 and _stage_lines(out)["read"].endswith("<- bound") and "bounded by read" in out


def test_json_holds_the_plan_and_the_estimate():
    rc, out, _ = _run("--recipe", "Q4_K_M", "--estimate", "--gpus", "8", "--hosts", "2", "--json",
                      "--throughput", "F32=1G", "--no-tensor-cache")
    assert rc == 0
    data = json.loads(out)
    assert data["total_bytes"] == plan(R1, "Q4_K_M").total_bytes and len(data["tensors"]) > 1000
    e = data["estimate"]
    assert e["host"] == {"device": "cuda", "gpus": 8, "threads": 1, "hosts": 2, "devices": 16,
                         "read_rate": 2 << 30, "write_rate": 1 << 30, "tensor_cache": False,
                         "shard_bytes": 40 << 30}
    assert e["complete"] and e["types"]["F32"]["measured"] == "given on the command line"
    assert e["bound"] == max(e["stages"], key=lambda s: e["stages"][s]["seconds"])
    assert e["disk"]["tensor_cache_bytes"] == 0 and e["disk"]["source_bytes"] == est.source_bytes(R1)[0]


def test_cpu_threads_without_a_measurement_say_so():
    rc, out, _ = _run("--recipe", "Q4_K_M", "--estimate", "--device", "cpu", "--threads", "3")
    assert rc == 0
    assert "Q4_K   567.219 B weights  no measurement on cpu at 3 thread(s)" in out
    rc, out, _ = _run("--recipe", "Q4_K_M", "--estimate", "--device", "cpu", "--threads", "2")
    assert rc == 0 and "no measurement" not in out and "2 thread(s)" in out


@pytest.mark.parametrize("argv,message", [
    (["--throughput", "Q4_K"], "expected TYPE=RATE"),
    (["--throughput", "Q4_K=fast"], "is not a rate"),
    (["--throughput", "Q4_K=0"], "must be positive"),
    (["--gpus", "0"], "gpus must be at least 1"),
])
def test_it_refuses_inputs_it_cannot_use(argv, message):
    rc, out, err = _run("--recipe", "Q4_K_M", "--estimate", *argv)
    assert rc == 2 and message in err and out == ""


def test_all_recipes_have_no_single_estimate():
    rc, out, err = _run("--all", "--estimate")
    assert rc == 2 and "--estimate plans one recipe" in err


def test_the_readmes_time_plan_is_what_the_command_prints():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    prompt = "$ dsq plan --config DeepSeek-R1 --recipe DQ3_K_M --estimate --gpus 8 --read-rate 2G --write-rate 1G\n"
    shown = readme.split(prompt, 1)[1].split("```", 1)[0]
    rc, out, _ = _run("--recipe", "DQ3_K_M", "--estimate", "--gpus", "8", "--read-rate", "2G", "--write-rate", "1G")
    assert rc == 0 and out == shown
