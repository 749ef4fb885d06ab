"""Importance matrices and the calibration datasets they are computed from; the jobs that compute them."""
from __future__ import annotations

from rest_framework import mixins, status, viewsets
from rest_framework.response import Response

from registry import calibration
from registry.api import schema, serializers
from registry.api.throttles import QuantizeRateThrottle, UserRateThrottle
from registry.api.views.jobs import JobActions
from registry.imatrices import request_imatrix
from registry.models import CHECKPOINT_NAME, CalibrationDataset, ImatrixArtifact, ImatrixJob


@schema.calibration_datasets
class CalibrationDatasetViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """GET: the datasets (the shipped default appears once first used); POST: register a text file on the server."""

    queryset = CalibrationDataset.objects.all()
    serializer_class = serializers.CalibrationDatasetSerializer
    lookup_field = "name"
    lookup_value_regex = CHECKPOINT_NAME
    filterset_fields = ["language"]

    def get_serializer_class(self):
        return (serializers.CalibrationDatasetCreateSerializer if self.action == "create"
                else serializers.CalibrationDatasetSerializer)

    def create(self, request, *args, **kwargs):
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        fields["source"] = fields["source"] or None
        if fields["source"] is None:
            del fields["source"]
        dataset, created = calibration.register_file(fields.pop("name"), fields.pop("path"), user=request.user,
                                                     **fields)
        return Response(serializers.CalibrationDatasetSerializer(dataset).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


@schema.imatrices
class ImatrixViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """GET: importance matrices with their coverage; POST: compute one (idempotent, as quantizations are)."""

    queryset = ImatrixArtifact.objects.select_related("checkpoint", "dataset")
    serializer_class = serializers.ImatrixSerializer
    filterset_fields = ["checkpoint__name", "dataset__name"]

    def get_throttles(self):
        if self.action == "create":
            return [UserRateThrottle(), QuantizeRateThrottle()]
        return super().get_throttles()

    def get_serializer_class(self):
        return serializers.ImatrixRequestSerializer if self.action == "create" else serializers.ImatrixSerializer

    def create(self, request, *args, **kwargs):
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        outcome = request_imatrix(user=request.user, **data.validated_data)
        body = {
            "created": outcome.created,
            "job": serializers.ImatrixJobSerializer(outcome.job, context={"request": request}).data
            if outcome.job else None,
            "imatrix": serializers.ImatrixSerializer(outcome.imatrix).data if outcome.imatrix else None,
        }
        return Response(body, status=status.HTTP_201_CREATED if outcome.created else status.HTTP_200_OK)


@schema.imatrix_jobs
class ImatrixJobViewSet(JobActions, viewsets.ReadOnlyModelViewSet):
    queryset = ImatrixJob.objects.select_related("checkpoint", "dataset")
    serializer_class = serializers.ImatrixJobSerializer
    filterset_fields = ["state", "checkpoint__name"]
    job_kind = "imatrix"
