"""The time plan: stage times from real plans and the measured table, checked by hand from the rows."""
from __future__ import annotations

import json
import math

import pytest
from safetensors import safe_open

from quant import estimate as est
from quant.configs import load_config
from quant.planner import plan
from tests.tiny_models import tiny_deepseek

R1 = load_config("DeepSeek-R1")
ROWS = json.loads(est.THROUGHPUT_FILE.read_text())["measurements"]


def _rows(device: str, threads: "int | None" = None) -> dict[str, float]:
    """The measured weights/s of one group of quant/data/throughput.json, read without quant.estimate."""
    (group,) = [g for g in ROWS if g["device"] == device and g.get("threads") == threads]
    return group["weights_per_s"]


def test_every_row_names_its_machine_and_command():
    for group in ROWS:
        assert group["machine"] and group["command"] and group["source"], group
        assert group["device"] in est.DEVICES
        assert all(rate > 0 for rate in group["weights_per_s"].values())
        assert (group["device"] == "cpu") == ("threads" in group)


def test_r1_dq3_on_one_8_gpu_host_is_the_hand_sum_of_the_rows():
    p = plan(R1, "DQ3_K_M")
    host = est.Host(device="cuda", gpus=8, read_rate=2 << 30, write_rate=1 << 30, shard_bytes=40 << 30)
    e = est.estimate_plan(p, 673_000_000_000, host)

    gpu = _rows("cuda")
    types = p.type_summary()
    assert set(types) == {"F32", "Q3_K", "Q4_0", "Q4_K", "Q5_K", "Q6_K"}
    one_device = sum(row["weights"] / gpu[q] for q, row in types.items() if q != "F32")
    # 8 files of at most 40 GiB, one shard job each on 8 GPUs: the largest file bounds the codec stage
    assert len(e.files) == 8 and sum(e.files) == pytest.approx(one_device)
    assert e.stage("codec").seconds == pytest.approx(max(e.files)) and max(e.files) > one_device / 8
    assert "8 files of at most 42.9 GB, one shard job each, largest first on 8 of 8 devices" in e.split_note
    # Q3_K alone: 608.456 B weights at 85.3 Mw/s on one H200 is about 1 h 59 min
    assert types["Q3_K"]["weights"] / gpu["Q3_K"] == pytest.approx(7133, abs=1)
    assert e.stage("read").seconds == pytest.approx(673e9 / 2**31)
    assert e.stage("write").seconds == pytest.approx(2 * p.total_bytes / 2**30)  # output + tensor cache
    assert e.bound.name == "codec" and e.seconds == e.stage("codec").seconds

    # the GPU figures hold no F32 row: its weights are reported, never guessed
    assert [t.type for t in e.missing] == ["F32"] and not e.complete
    assert "no measurement for F32 on cuda" in e.summary() and e.summary().startswith("at least ")
    assert e.to_dict()["types"]["F32"]["measured"] == "no measurement"


def test_two_hosts_halve_every_stage_and_read_bounds_when_the_disk_is_slow():
    p = plan(R1, "DQ3_K_M")
    one = est.estimate_plan(p, 673e9, est.Host(gpus=8, shard_bytes=5 << 30))
    two = est.estimate_plan(p, 673e9, est.Host(gpus=8, hosts=2, shard_bytes=5 << 30))
    for stage in ("read", "write"):
        assert two.stage(stage).seconds == pytest.approx(one.stage(stage).seconds / 2)
    # 60 files of at most 5 GiB over 8 and 16 GPUs: within 10 % of an even split (whole files, largest first)
    assert len(one.files) == 60
    assert sum(one.files) / 8 < one.stage("codec").seconds < 1.1 * sum(one.files) / 8
    assert sum(one.files) / 16 < two.stage("codec").seconds < 1.1 * sum(one.files) / 16
    assert one.bound.name == "codec"

    slow = est.estimate_plan(p, 673e9, est.Host(gpus=8, read_rate=200 << 20, shard_bytes=5 << 30))
    assert slow.bound.name == "read"
    assert slow.seconds == pytest.approx(673e9 / (200 << 20))
    assert slow.stage("codec").seconds == one.stage("codec").seconds


def test_q4_k_m_writes_twice_its_output_as_a_job_and_once_as_dsq_quantize():
    p = plan(R1, "Q4_K_M")
    job = est.estimate_plan(p, 673e9, est.Host(gpus=8, shard_bytes=8 << 30))
    cli = est.estimate_plan(p, 673e9, est.Host(gpus=8, tensor_cache=False, shard_bytes=8 << 30))
    assert job.stage("write").seconds == pytest.approx(2 * cli.stage("write").seconds)
    assert job.disk.free_bytes == 2 * p.total_bytes + (64 << 20)  # what workers.quantize.requirements asks
    assert cli.disk.free_bytes == p.total_bytes + (64 << 20)
    assert job.bound.name == "write" and cli.bound.name == "codec"


def test_cpu_rows_are_per_thread_count_and_an_unmeasured_count_is_missing_everywhere():
    p = plan(load_config("DeepSeek-R1-Distill-Qwen-7B"), "Q4_K_M")
    cpu2 = _rows("cpu", 2)
    e = est.estimate_plan(p, 15e9, est.Host(device="cpu", threads=2))
    assert e.complete
    assert e.stage("codec").seconds == pytest.approx(sum(r["weights"] / cpu2[q] for q, r in p.type_summary().items()))
    assert e.to_dict()["split"] == ""

    three = est.estimate_plan(p, 15e9, est.Host(device="cpu", threads=3))
    assert {t.type for t in three.missing} == set(p.type_summary())
    assert three.stage("codec").seconds == 0 and three.bound.name != "codec"
    assert three.summary().startswith("at least ") and "Q4_K on cpu" in three.summary()


def test_an_override_wins_over_the_rows_and_fills_a_missing_type():
    p = plan(R1, "DQ3_K_M")
    table = est.ThroughputTable.load().with_overrides({"F32": 1e9, "Q3_K": 170.6e6})
    e = est.estimate_plan(p, 673e9, est.Host(gpus=1), table)
    assert e.complete
    types = p.type_summary()
    gpu = _rows("cuda")
    expected = (types["F32"]["weights"] / 1e9 + types["Q3_K"]["weights"] / 170.6e6
                + sum(types[q]["weights"] / gpu[q] for q in ("Q4_0", "Q4_K", "Q5_K", "Q6_K")))
    assert e.stage("codec").seconds == pytest.approx(expected)
    with pytest.raises(est.EstimateError, match="positive"):
        table.with_overrides({"Q4_K": 0})


def test_hosts_refuse_what_they_cannot_be():
    with pytest.raises(est.EstimateError, match="device"):
        est.Host(device="tpu")
    with pytest.raises(est.EstimateError, match="gpus"):
        est.Host(gpus=0)
    with pytest.raises(est.EstimateError, match="read_rate"):
        est.Host(read_rate=0)


def test_source_bytes_of_a_dense_fp8_config_by_hand():
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
              "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "vocab_size": 300, "tie_word_embeddings": False,
              "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}}
    # per block: q, o 256x256 (4 tiles each), k, v 128x256 (2), gate, up 512x256 and down 256x512 (8):
    # 589,824 FP8 weights, 36 float32 scales, two BF16 norms of 256
    block = 589_824 + 36 * 4 + 2 * 256 * 2
    expected = 2 * block + 2 * 300 * 256 * 2 + 256 * 2  # embeddings and head BF16, the output norm
    assert est.source_bytes(config)[0] == expected
    assert est.source_bytes(config, "BF16")[0] == 2 * (2 * (589_824 + 512) + 2 * 300 * 256 + 256)


def test_source_bytes_match_a_real_fp8_checkpoint(tmp_path):
    """Every tensor the conversion reads from the tiny FP8 DeepSeek-V3, MTP block left out."""
    src = tiny_deepseek(tmp_path, fp8=True)
    config = json.loads((src / "config.json").read_text())
    mtp = f"model.layers.{config['num_hidden_layers']}."
    on_disk = 0
    for f in src.glob("*.safetensors"):
        with safe_open(f, "pt") as s:
            for name in s.keys():
                if name.startswith(mtp):
                    continue
                t = s.get_slice(name)
                n = math.prod(t.get_shape())
                on_disk += n * {"BF16": 2, "F8_E4M3": 1, "F32": 4}[t.get_dtype()]
                # the tiny keeps kv_a_proj_with_mqa in BF16 (its FP8 rule matches *proj.weight);
                # DeepSeek's checkpoints store it in FP8 with scales, as the estimate counts
                if name.endswith("kv_a_proj_with_mqa.weight"):
                    rows, cols = t.get_shape()
                    on_disk += -n + 4 * math.ceil(rows / 128) * math.ceil(cols / 128)
    assert est.source_bytes(config)[0] == on_disk


def test_r1_reads_673_gb_of_fp8():
    read, how = est.source_bytes(R1)
    assert read == 673_150_611_808 and how.startswith("FP8")


def test_durations_read_as_people_write_them():
    assert [est.duration(s) for s in (12.4, 425, 7380)] == ["12 s", "7 min 05 s", "2 h 03 min"]


def test_shard_jobs_go_largest_first_to_the_device_free_first():
    # 5 -> a, 4 -> b, 3 -> b (7), 3 -> a (8), 3 -> b (10): the busiest device's total
    assert est.schedule([3, 5, 3, 4, 3], 2) == 10
    assert est.schedule([3, 5, 3, 4, 3], 8) == 5  # more devices than files: the largest file
    assert est.schedule([7.5], 1) == 7.5


def test_one_file_is_one_job_on_one_device_however_many_there_are():
    p = plan(R1, "DQ3_K_M")
    one_file = est.estimate_plan(p, 673e9, est.Host(gpus=8))
    alone = est.estimate_plan(p, 673e9, est.Host(gpus=1))
    assert one_file.stage("codec").seconds == pytest.approx(alone.stage("codec").seconds)
    assert one_file.split_note.startswith("one file: one job on one device of 8")
