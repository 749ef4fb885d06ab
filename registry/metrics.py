"""Prometheus metrics at `/metrics`.

What the job rows and Redis hold is read at scrape time by `RegistryCollector`, so every gunicorn
worker answers the same numbers (no per-process counters that drift). Only API request latency is
measured in the process: with several gunicorn workers set PROMETHEUS_MULTIPROC_DIR (an empty
directory, shared by them) and the histogram is merged across them.
"""
from __future__ import annotations

import os
import time

from django.conf import settings
from django.db import DatabaseError, connections
from django.db.models import Count
from django.http import HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from registry import fleet
from registry.models import JobState, QuantizationJob, Release

DURATION_BUCKETS = (1, 10, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600, 48 * 3600)

REQUEST_LATENCY = Histogram("dsq_http_request_duration_seconds", "Time to answer a request, by resolved route",
                            ["route", "method", "status"])


class RegistryCollector(Collector):
    """Gauges computed from the database and the broker's Redis on every scrape."""

    def collect(self):
        up = GaugeMetricFamily("dsq_database_up", "Whether the database answered this scrape")
        try:
            families = [*self.jobs(), *self.durations(), *self.weights_per_second(), *self.publishing()]
            up.add_metric([], 1)
        except DatabaseError:  # the database away: say so, and leave out what only it knows
            connections["default"].close()
            families = []
            up.add_metric([], 0)
        yield up
        yield from families
        yield from self.fleet()

    def jobs(self):
        by_state = GaugeMetricFamily("dsq_jobs", "Jobs by kind and state", labels=["kind", "state"])
        stuck = GaugeMetricFamily("dsq_jobs_stuck", f"Running jobs with no heartbeat for DSQ_STUCK_MINUTES "
                                                    f"({settings.DSQ_STUCK_MINUTES})", labels=["kind"])
        for kind, model in fleet.JOB_MODELS.items():
            counts = dict(model.objects.values_list("state").annotate(n=Count("pk")).values_list("state", "n"))
            for state in JobState.values:
                by_state.add_metric([kind, state], counts.get(state, 0))
            stuck.add_metric([kind], sum(fleet.is_stuck(j) for j in model.objects.filter(state=JobState.RUNNING)))
        yield by_state
        yield stuck

    def durations(self):
        family = HistogramMetricFamily("dsq_job_duration_seconds", "Run time of finished jobs (started_at to "
                                       "finished_at of the last attempt)", labels=["kind", "state"])
        for kind, model in fleet.JOB_MODELS.items():
            rows = model.objects.filter(started_at__isnull=False, finished_at__isnull=False,
                                        state__in=[JobState.SUCCEEDED, JobState.FAILED]).values_list(
                                            "state", "started_at", "finished_at")
            by_state: dict[str, list[float]] = {}
            for state, started, finished in rows:
                by_state.setdefault(state, []).append(max(0.0, (finished - started).total_seconds()))
            for state, seconds in sorted(by_state.items()):
                buckets = [(floatToGoString(b), sum(s <= b for s in seconds)) for b in DURATION_BUCKETS]
                buckets.append(("+Inf", len(seconds)))
                family.add_metric([kind, state], buckets, sum(seconds))
        yield family

    def weights_per_second(self):
        """Source parameters over run time of succeeded quantizations. The job row holds its queue
        (gpu or cpu), not the exact device, so `queue` stands for the device class."""
        family = GaugeMetricFamily("dsq_quantize_weights_per_second",
                                   "Mean weights quantized per second of succeeded quantization jobs",
                                   labels=["type", "queue"])
        rates: dict[tuple[str, str], list[float]] = {}
        for recipe, queue, params, started, finished in QuantizationJob.objects.filter(
                state=JobState.SUCCEEDED, started_at__isnull=False, finished_at__isnull=False).values_list(
                    "recipe__name", "queue", "checkpoint__parameter_count", "started_at", "finished_at"):
            seconds = (finished - started).total_seconds()
            if params and seconds > 0:
                rates.setdefault((recipe, queue), []).append(params / seconds)
        for (recipe, queue), values in sorted(rates.items()):
            family.add_metric([recipe, queue], sum(values) / len(values))
        yield family

    def publishing(self):
        """A publish that failed (or whose message was lost) leaves its release approved, not published."""
        family = GaugeMetricFamily(
            "dsq_publish_failures", "Approved releases still not on the Hub DSQ_REQUEUE_SECONDS after approval")
        family.add_metric([], Release.objects.filter(
            state=Release.State.APPROVED,
            decided_at__lt=_seconds_ago(settings.DSQ_REQUEUE_SECONDS)).count())
        yield family

    def fleet(self):
        up = GaugeMetricFamily("dsq_broker_up", "Whether the broker's Redis answered this scrape")
        try:
            client = fleet.redis_client()
            depths, hosts = fleet.queue_depths(client), fleet.hosts(client)
        except Exception:  # Redis away: say so, and leave out what only it knows
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily("dsq_queue_depth", "Messages waiting in each Celery queue", labels=["queue"])
        for queue, n in depths.items():
            depth.add_metric([queue], n)
        yield depth
        age = GaugeMetricFamily("dsq_worker_heartbeat_age_seconds", "Seconds since each live worker last "
                                "advertised itself", labels=["worker", "device"])
        free = GaugeMetricFamily("dsq_gpu_memory_free_bytes", "Free GPU memory per host", labels=["worker", "device"])
        used = GaugeMetricFamily("dsq_gpu_memory_used_bytes", "Used GPU memory per host", labels=["worker", "device"])
        for h in hosts:
            age.add_metric([h.worker, h.device], h.age_seconds)
            if h.gpu_used_bytes is not None:
                free.add_metric([h.worker, h.device], h.gpu_free_bytes)
                used.add_metric([h.worker, h.device], h.gpu_used_bytes)
        yield age
        yield free
        yield used


def _seconds_ago(seconds: float):
    import datetime as dt

    from django.utils import timezone

    return timezone.now() - dt.timedelta(seconds=seconds)


_registry_metrics = CollectorRegistry(auto_describe=False)
_registry_metrics.register(RegistryCollector())


def process_registry() -> CollectorRegistry:
    """The in-process metrics: merged across gunicorn workers when PROMETHEUS_MULTIPROC_DIR is set."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def metrics_view(request) -> HttpResponse:
    body = generate_latest(process_registry()) + generate_latest(_registry_metrics)
    return HttpResponse(body, content_type="text/plain; version=0.0.4; charset=utf-8")


class RequestLatency:
    """Times every request under its resolved route pattern (never the raw path: ids would explode the labels)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        start = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = "/" + match.route if match is not None and match.route is not None else "unresolved"
        REQUEST_LATENCY.labels(route, request.method, str(response.status_code)).observe(time.perf_counter() - start)
        return response
