"""Worker hosts: claim a job row, run it (quantize, benchmark, publish), record how it ended.

The Celery app is dsq.celery; the task bodies are in workers.tasks. Workers import the
registry's models and services; the registry never imports workers.
"""
