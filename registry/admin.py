"""Admin: read-only views of the registry (release review actions come with the registry issue)."""
from django.contrib import admin

from registry import models


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(models.Checkpoint)
class CheckpointAdmin(ReadOnlyAdmin):
    list_display = ["name", "family", "architecture", "parameter_count", "source_dtype", "revision"]
    search_fields = ["name", "family", "hf_repo"]


@admin.register(models.Recipe)
class RecipeAdmin(ReadOnlyAdmin):
    list_display = ["name", "version", "sha256", "builtin", "created_at"]


@admin.register(models.QuantizationJob)
class QuantizationJobAdmin(ReadOnlyAdmin):
    list_display = ["pk", "checkpoint", "recipe", "state", "progress", "step", "worker", "attempts", "created_at"]
    list_filter = ["state"]


@admin.register(models.Variant)
class VariantAdmin(ReadOnlyAdmin):
    list_display = ["pk", "checkpoint", "recipe", "status", "total_bytes", "bits_per_weight", "created_at"]
    list_filter = ["status"]


@admin.register(models.AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ["at", "actor", "action", "object_type", "object_id"]
