"""The conversion driver: progress, cancellation, clean failure, result statistics, the CLI."""
from __future__ import annotations

import json
import math

import gguf
import pytest

from dsq.cli import main as dsq_main
from quant.convert import ConversionCancelled, convert, plan_conversion
from quant.progress import Callbacks


def _leftovers(d):
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_progress_reports_every_tensor_and_all_bytes(tiny_deepseek_dir, tmp_path):
    events = []
    res = convert(tiny_deepseek_dir, tmp_path, "F16", reporter=Callbacks(events.append))
    done = [e for e in events if e.message]
    n = len(res.tensors)
    assert [e.index for e in done] == list(range(1, n + 1))
    assert [e.message.split(" ")[:2] for e in done[:2]] == [["tensor", f"1/{n}"], ["tensor", f"2/{n}"]]
    assert done[-1].step == f"quantize {n}/{n}" and done[-1].fraction == 1.0
    assert all(a.fraction <= b.fraction for a, b in zip(events, events[1:]))
    assert done[-1].eta_s == 0


def test_cancellation_between_tensors_leaves_nothing(tiny_deepseek_dir, tmp_path):
    seen = []

    def progress(p):
        if p.message:
            seen.append(p.index)

    with pytest.raises(ConversionCancelled, match="tensor 4 of"):
        convert(tiny_deepseek_dir, tmp_path, "F16", reporter=Callbacks(progress, lambda: len(seen) >= 3))
    assert _leftovers(tmp_path) == []


def test_a_failure_mid_stream_deletes_the_temporaries(tiny_deepseek_dir, tmp_path):
    plan = plan_conversion(tiny_deepseek_dir, "F16")
    victim = plan.tensors[5].out

    def broken(max_weights):
        raise OSError("disk on fire")
        yield  # pragma: no cover

    victim.slabs = broken
    from quant.convert import execute

    with pytest.raises(OSError, match="disk on fire"):
        execute(plan, tmp_path / "out")
    assert _leftovers(tmp_path / "out") == []


def test_result_has_files_types_and_error_stats(tiny_deepseek_dir, tmp_path):
    res = convert(tiny_deepseek_dir, tmp_path, "Q8_0", source_repo="example/tiny-ds3", source_revision="0123abc")
    f = res.files[0]
    assert f.path.is_file() and f.size == f.path.stat().st_size and len(f.sha256) == 64
    by_name = {t.name: t for t in res.tensors}
    q = by_name["blk.1.ffn_up_exps.weight"]
    assert q.type == "Q8_0" and 30 < q.sqnr_db < 60 and 0 < q.rel_error < 0.05 and q.rmse > 0
    norm = by_name["blk.1.attn_norm.weight"]
    assert norm.type == "F32" and norm.rmse == 0 and math.isinf(norm.sqnr_db)
    assert res.types()["blk.1.ffn_gate_inp.weight"] == "F32"
    assert 8 < res.bits_per_weight < 9
    d = res.to_dict()
    json.dumps(d)  # serialisable for the worker
    r = gguf.GGUFReader(f.path)
    assert r.fields["dsq.source.repo"].contents() == "example/tiny-ds3"
    assert r.fields["dsq.source.revision"].contents() == "0123abc"
    assert r.fields["general.file_type"].contents() == int(gguf.LlamaFileType.MOSTLY_Q8_0)


def test_dsq_quantize_command(tiny_deepseek_dir, tmp_path, capsys):
    rc = dsq_main(["quantize", str(tiny_deepseek_dir), "--recipe", "BF16", "--out", str(tmp_path), "--json",
                   "--name", "tiny", "--shard-size", "2M"])
    assert rc == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert [f["path"].rsplit("/", 1)[1] for f in out["files"]][0].startswith("tiny-00001-of-")
    assert {t["type"] for t in out["tensors"]} == {"BF16", "F32"}
    assert f"[{len(out['tensors'])}/{len(out['tensors'])}] 100.0%" in captured.err

    rc = dsq_main(["quantize", str(tiny_deepseek_dir), "--recipe", "Q4_K_M", "--out", str(tmp_path / "dry"), "--dry-run"])
    assert rc == 0 and not (tmp_path / "dry").exists()
    assert "blk.1.ffn_down_exps.weight" in capsys.readouterr().out

    assert dsq_main(["quantize", str(tmp_path / "nope"), "--recipe", "Q8_0", "--out", str(tmp_path)]) == 1


def test_dsq_make_tiny(tmp_path, capsys):
    rc = dsq_main(["make-tiny", str(tmp_path / "m"), "--num-hidden-layers", "2", "--n-routed-experts", "4",
                   "--num-experts-per-tok", "2", "--n-group", "2", "--topk-group", "1", "--fp8"])
    assert rc == 0
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 2 and cfg["quantization_config"]["quant_method"] == "fp8"
    assert cfg["scoring_func"] == "sigmoid" and cfg["topk_method"] == "noaux_tc"
    assert (tmp_path / "m" / "model.safetensors.index.json").is_file()


def test_whole_expert_slices_are_joined_into_slabs_with_the_same_bytes(tiny_deepseek_dir, tmp_path):
    from quant.convert import _read_tensor, execute

    plan = plan_conversion(tiny_deepseek_dir, "Q4_K_M")
    p = next(t for t in plan.tensors if t.info.name == "blk.1.ffn_up_exps.weight")
    n_exp, rows, cols = p.info.shape
    slabs = list(_read_tensor(plan, p, 2 * rows * cols))
    assert [(s.expert, s.experts, tuple(s.data.shape)) for s in slabs] == \
        [(e, min(2, n_exp - e), (min(2, n_exp - e) * rows, cols)) for e in range(0, n_exp, 2)]
    halves = list(_read_tensor(plan, p, rows * cols // 2))  # parts of a slice are never joined
    assert len(halves) == 2 * n_exp and {s.experts for s in halves} == {1}

    joined = execute(plan, tmp_path / "joined")
    apart = execute(plan_conversion(tiny_deepseek_dir, "Q4_K_M"), tmp_path / "apart", slab_weights=rows * cols // 2)
    assert joined.files[0].sha256 == apart.files[0].sha256
    assert joined.files[0].path.read_bytes() == apart.files[0].path.read_bytes()
