"""Celery app and tasks: GPU hosts run quantization and evaluation; the job rows live in the registry."""
from workers.celery_app import app

__all__ = ["app"]
