"""Who may do what through the API. The rules themselves live on the models (registry.models)."""
from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from registry.access import can_read_audit_log
from registry.models import is_approver


class IsApprover(BasePermission):
    message = "only approvers (the 'approvers' group or registry.approve_release) may do this"

    def has_permission(self, request, view) -> bool:
        return is_approver(request.user)


class ReadOnlyOrApprover(IsApprover):
    def has_permission(self, request, view) -> bool:
        return request.method in SAFE_METHODS or is_approver(request.user)


class IsJobOwnerOrApprover(BasePermission):
    """Jobs are cancelled or retried by whoever asked for them, an approver, or staff."""

    message = "only the job's requester, an approver or staff may cancel or retry it"

    def has_object_permission(self, request, view, obj) -> bool:
        user = request.user
        return bool(user.is_authenticated and (
            obj.requested_by_id == user.pk or user.is_staff or is_approver(user)))


class CanReadAuditLog(BasePermission):
    message = "only approvers and auditors (registry.view_auditlog) may read the audit log"

    def has_permission(self, request, view) -> bool:
        return can_read_audit_log(request.user)
