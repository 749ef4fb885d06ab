"""Quantize jobs run the recipe stored with them, exactly as stored."""
from __future__ import annotations

import pytest

from registry.models import JobState, QuantizationJob, Recipe, Variant
from tests import factories
from workers import runner

pytestmark = pytest.mark.django_db(transaction=True)  # run_job closes connections like a worker


def test_a_job_whose_stored_recipe_does_not_parse_fails_naming_the_recipe(celery_broker, redis_server, settings,
                                                                         tmp_path):
    settings.CELERY_BROKER_URL = redis_server.url  # where the worker advertises itself
    settings.DSQ_STORAGE_ROOT = tmp_path
    # a row as an older parser could have accepted it; a built-in of the same name exists
    stored = Recipe.objects.create(name="Q4_K_M", version=1, sha256="a" * 64,
                                   definition={"name": "Q4_K_M", "version": 1, "default": "Q4_K"})
    job = factories.quantization_job(factories.checkpoint(local_path=str(tmp_path / "absent")), stored,
                                     max_attempts=1)

    assert runner.run_job("quantize", job.pk) == JobState.FAILED
    row = QuantizationJob.objects.get(pk=job.pk)
    assert "stored recipe Q4_K_M v1 (sha256 aaaaaaaaaaaa) does not parse: unknown field(s) ['default']" in row.error
    assert not Variant.objects.exists()
