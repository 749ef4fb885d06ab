"""registry.shards: a split quantization's state kept in rows (split, roll_up, settle), its page and API."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from registry import jobs, shards
from registry.models import JobState, QuantizationJob, ShardJob
from tests import factories
from tests.registry.personas import anonymous  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db

FILES = [("m-00001-of-00003.gguf", 100), ("m-00002-of-00003.gguf", 300), ("m-00003-of-00003.gguf", 600)]


@pytest.fixture
def parent():
    from registry.quantizations import request_key

    ckpt, recipe = factories.deepseek_checkpoint(), factories.builtin_recipe("Q4_K_M")
    job = factories.quantization_job(ckpt, recipe, request_key=request_key(ckpt, recipe, ""))
    return jobs.claim(QuantizationJob, job.pk, "w1")


def test_split_turns_the_running_job_into_a_waiting_one_with_a_queued_shard_per_file(parent):
    made = shards.split(parent, FILES, "k" * 64)
    assert [(s.index, s.count, s.file_name, s.planned_bytes, s.state) for s in made] == [
        (i, 3, name, size, JobState.QUEUED) for i, (name, size) in enumerate(FILES)]
    row = QuantizationJob.objects.get(pk=parent.pk)
    assert row.state == JobState.WAITING and row.lease_expires_at is None and row.step == "split into 3 shard jobs"
    assert len({s.request_key for s in made}) == 3


def test_a_job_no_longer_ours_is_not_split(parent):
    QuantizationJob.objects.filter(pk=parent.pk).update(worker="w2")
    with pytest.raises(jobs.LeaseLost):
        shards.split(parent, FILES, "k" * 64)
    assert not ShardJob.objects.exists()


def test_progress_is_the_shards_weighted_by_their_bytes_with_an_eta(parent):
    first, second, third = shards.split(parent, FILES, "k" * 64)
    started = timezone.now() - dt.timedelta(seconds=30)
    ShardJob.objects.filter(pk=first.pk).update(state=JobState.SUCCEEDED, progress=1.0, started_at=started)
    ShardJob.objects.filter(pk=third.pk).update(state=JobState.RUNNING, progress=0.5, started_at=started)
    shards.roll_up(parent.pk)
    row = QuantizationJob.objects.get(pk=parent.pk)
    assert row.progress == pytest.approx((100 + 300) / 1000)  # 100 written + half of 600
    assert row.step == "3 shard jobs: 1 written, 1 running, 1 queued"
    assert row.eta_seconds == pytest.approx(30 * 0.6 / 0.4, rel=0.05)


def test_settle_waits_while_a_shard_is_live_and_queues_the_job_when_all_succeeded(parent):
    made = shards.split(parent, FILES, "k" * 64)
    ShardJob.objects.filter(pk__in=[s.pk for s in made[:2]]).update(state=JobState.SUCCEEDED, progress=1.0)
    assert shards.settle(parent.pk) == JobState.WAITING and not shards.all_final(parent.pk)
    assert shards.waiting_parents() == []
    ShardJob.objects.filter(pk=made[2].pk).update(state=JobState.SUCCEEDED, progress=1.0)
    assert shards.waiting_parents() == [parent.pk]
    assert shards.settle(parent.pk) == JobState.QUEUED
    row = QuantizationJob.objects.get(pk=parent.pk)
    assert (row.state, row.attempts, row.progress) == (JobState.QUEUED, 0, 1.0)


def test_a_second_identical_request_finds_the_waiting_job(parent):
    from registry.quantizations import request_quantization

    shards.split(parent, FILES, "k" * 64)
    outcome = request_quantization(parent.checkpoint, parent.recipe, user=None)
    assert not outcome.created and outcome.job.pk == parent.pk


def test_the_page_and_the_api_show_the_shards(client, anonymous, parent):  # noqa: F811
    made = shards.split(parent, FILES, "k" * 64)
    ShardJob.objects.filter(pk=made[0].pk).update(state=JobState.RUNNING, worker="gpu-host-2", progress=0.25)
    page = client.get(f"/jobs/quantize/{parent.pk}/").content.decode()
    assert '<td id="state">waiting</td>' in page and 'id="shards"' in page
    assert f'<a href="/jobs/shard/{made[0].pk}/">m-00001-of-00003.gguf</a></td><td>running</td>' in page
    assert "<td>gpu-host-2</td>" in page
    shard_page = client.get(f"/jobs/shard/{made[0].pk}/").content.decode()
    assert f'<a id="parent" href="/jobs/quantize/{parent.pk}/">' in shard_page
    body = anonymous.get(f"/api/jobs/quantize/{parent.pk}/").json()
    assert body["state"] == "waiting"
    assert [(s["index"], s["file_name"], s["state"]) for s in body["shards"]] == [
        (0, "m-00001-of-00003.gguf", "running"), (1, "m-00002-of-00003.gguf", "queued"),
        (2, "m-00003-of-00003.gguf", "queued")]


def test_the_admin_shows_a_split_jobs_shards(admin_client, parent):
    shards.split(parent, FILES, "k" * 64)
    page = admin_client.get(f"/admin/registry/quantizationjob/{parent.pk}/change/").content.decode()
    assert all(name in page for name, _ in FILES) and "Shard jobs" in page
