"""GET /api/audit/: the audit log, read-only, for approvers and auditors, filtered by who, what and when."""
from __future__ import annotations

from rest_framework import viewsets

from registry.api import serializers
from registry.api.filters import AuditLogFilter
from registry.api.permissions import CanReadAuditLog
from registry.models import AuditLog


class AuditLogViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = AuditLog.objects.order_by("-at", "-pk")  # newest first, a stable order within one instant
    serializer_class = serializers.AuditLogSerializer
    permission_classes = [CanReadAuditLog]
    filterset_class = AuditLogFilter
