"""Quantization requests and the jobs they start: live progress, cancel, retry."""
from __future__ import annotations

from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from registry import dispatch, jobs
from registry.api import schema, serializers
from registry.api.errors import error
from registry.api.permissions import IsJobOwnerOrApprover
from registry.api.throttles import QuantizeRateThrottle, UserRateThrottle
from registry.models import BenchmarkJob, QuantizationJob
from registry.quantizations import request_quantization


class JobActions:
    """cancel and retry, for any job model (registry.jobs does the state change)."""

    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated, IsJobOwnerOrApprover])
    def cancel(self, request, pk=None):
        job = self.get_object()
        if not jobs.request_cancel(job):
            return error(f"job {job.pk} is {job.state}: only queued, waiting or running jobs can be cancelled",
                         status.HTTP_409_CONFLICT)
        job.refresh_from_db()
        return Response(self.get_serializer(job).data)

    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated, IsJobOwnerOrApprover])
    def retry(self, request, pk=None):
        job = self.get_object()
        if not jobs.retry(job):
            return error(f"job {job.pk} is {job.state}: only failed or cancelled jobs can be retried",
                         status.HTTP_409_CONFLICT)
        dispatch.enqueue_on_commit(self.job_kind, job.pk)
        job.refresh_from_db()
        return Response(self.get_serializer(job).data)


@schema.quantization_jobs
class QuantizationJobViewSet(JobActions, viewsets.ReadOnlyModelViewSet):
    queryset = QuantizationJob.objects.select_related("checkpoint", "recipe").prefetch_related("shards")
    serializer_class = serializers.QuantizationJobSerializer
    filterset_fields = ["state", "checkpoint__name"]
    job_kind = "quantize"


@schema.benchmark_jobs
class BenchmarkJobViewSet(JobActions, viewsets.ReadOnlyModelViewSet):
    queryset = BenchmarkJob.objects.all()
    serializer_class = serializers.BenchmarkJobSerializer
    filterset_fields = ["state", "suite"]
    job_kind = "benchmark"


@schema.quantizations
class QuantizationRequestViewSet(viewsets.GenericViewSet):
    """POST /api/quantizations/: idempotent; 201 with a new job, 200 with the existing job or variant."""

    serializer_class = serializers.QuantizationRequestSerializer
    permission_classes = [IsAuthenticated]
    throttle_classes = [UserRateThrottle, QuantizeRateThrottle]

    def create(self, request):
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        outcome = request_quantization(user=request.user, **data.validated_data)
        body = {
            "created": outcome.created,
            "job": serializers.QuantizationJobSerializer(outcome.job, context={"request": request}).data
            if outcome.job else None,
            "variant": serializers.VariantSerializer(outcome.variant).data if outcome.variant else None,
        }
        return Response(body, status=status.HTTP_201_CREATED if outcome.created else status.HTTP_200_OK)
