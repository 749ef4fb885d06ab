"""One file of a split plan written alone (a shard job's unit) is the file a whole run writes."""
from __future__ import annotations

import pytest

from quant import convert
from quant.progress import Callbacks


def test_each_file_written_alone_equals_the_whole_runs_file(tiny_deepseek_dir, tmp_path):
    plan = convert.plan_conversion(tiny_deepseek_dir, "Q4_K_M", shard_size=256 << 10, name="m")
    assert len(plan.shards) >= 3
    whole = convert.execute(plan, tmp_path / "whole", stats=False)
    for i, expected in enumerate(whole.files):
        one = convert.execute(plan, tmp_path / f"file{i}", stats=False, only_file=i)
        assert [f.path.name for f in one.files] == [expected.path.name]
        assert one.files[0].path.read_bytes() == expected.path.read_bytes()
        assert one.files[0].sha256 == expected.sha256
        assert [t.name for t in one.tensors] == [t.info.name for t in plan.tensors if t.file_index == i]
        assert sorted(p.name for p in (tmp_path / f"file{i}").iterdir()) == [expected.path.name]  # nothing else left


def test_the_files_results_stored_and_combined_are_the_whole_runs_result(tiny_deepseek_dir, tmp_path):
    plan = convert.plan_conversion(tiny_deepseek_dir, "Q4_K_M", shard_size=256 << 10, name="m")
    whole = convert.execute(plan, tmp_path / "whole").to_dict()
    parts = [convert.ConversionResult.from_dict(
        convert.execute(plan, tmp_path / f"file{i}", only_file=i).to_dict())  # as a shard job stores it
        for i in range(len(plan.shards))]
    combined = convert.ConversionResult.combine(parts).to_dict()
    for d in (whole, combined):
        d.pop("seconds")
        for f in d["files"]:
            f.pop("path")
    assert combined == whole


def test_a_file_written_alone_resumes_from_its_tensor_cache(tiny_deepseek_dir, tmp_path):
    plan = convert.plan_conversion(tiny_deepseek_dir, "Q4_K_M", shard_size=256 << 10, name="m")
    expected = convert.execute(plan, tmp_path / "alone", stats=False, only_file=1).files[0]
    cache, seen = tmp_path / "cache", []
    with pytest.raises(convert.ConversionCancelled):
        convert.execute(plan, tmp_path / "out", stats=False, only_file=1, tensor_cache_dir=cache,
                        reporter=Callbacks(lambda p: p.message and seen.append(p.index), lambda: len(seen) >= 2))
    cached = len(list(cache.glob("*.bin")))
    assert cached == 2
    again = convert.execute(plan, tmp_path / "out", stats=False, only_file=1, tensor_cache_dir=cache)
    assert again.files[0].path.read_bytes() == expected.path.read_bytes()


def test_a_file_outside_the_plan_is_refused(tiny_deepseek_dir, tmp_path):
    plan = convert.plan_conversion(tiny_deepseek_dir, "Q8_0", shard_size=256 << 10, name="m")
    with pytest.raises(convert.ConversionError, match=f"file {len(plan.shards)} asked for"):
        convert.execute(plan, tmp_path, only_file=len(plan.shards))
