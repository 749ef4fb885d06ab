"""Who may read what, beyond what anyone may read: one place for the rules, used by views and serializers.

Anyone (anonymous included) reads the catalogue, recipes, variants' metadata, releases, tags, jobs'
progress, pull manifests and the files of released variants (an approved or published release).
What no human approved, and what describes the server rather than the models, is narrower:

- files of unreleased variants (the F16/Q8_0 reference, quants not yet approved): the user who
  requested a quantization job that made the variant, and approvers;
- a job's `error` and `log_tail` (tracebacks, server paths, lines of files): its requester and approvers;
- a checkpoint's `local_path` (a directory on the server): approvers;
- the audit log: approvers and holders of registry.view_auditlog (the "auditors" group), read-only.
"""
from __future__ import annotations

from registry.models import QuantizationJob, Variant, is_approver, released

AUDIT_VIEW_PERMISSION = "registry.view_auditlog"
AUDITORS_GROUP = "auditors"  # holds AUDIT_VIEW_PERMISSION (registry.bootstrap)


def _signed_in(user) -> bool:
    return user is not None and getattr(user, "is_authenticated", False) and user.is_active


def _approver(user) -> bool:
    """is_approver, asked once per user object (a listing asks for every row)."""
    if not _signed_in(user):
        return False
    if not hasattr(user, "_dsq_is_approver"):
        user._dsq_is_approver = is_approver(user)
    return user._dsq_is_approver


def can_read_files(user, variant: Variant) -> bool:
    """Released files are public; the rest only to the variant's job requester and approvers."""
    if released(variant.pk):
        return True
    if not _signed_in(user):
        return False
    return _approver(user) or QuantizationJob.objects.filter(variant=variant, requested_by=user).exists()


def can_read_job_details(user, job) -> bool:
    """error and log_tail: tracebacks and server paths are for the job's requester and approvers."""
    return _signed_in(user) and (job.requested_by_id == user.pk or _approver(user))


def can_read_server_paths(user) -> bool:
    """Where files live on the server (checkpoint local_path): approvers only."""
    return _approver(user)


def can_read_audit_log(user) -> bool:
    return _approver(user) or (_signed_in(user) and user.has_perm(AUDIT_VIEW_PERMISSION))
