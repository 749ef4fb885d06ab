"""Admin: release review (approve / reject), a read-only audit log, and the recipe editor with a dry-run plan."""
from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from registry import models, publishing, review
from registry.access import can_read_audit_log
from registry.models import is_approver


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


class RecipeEditorForm(forms.Form):
    definition = forms.CharField(widget=forms.Textarea(attrs={"rows": 24, "cols": 100, "class": "vLargeTextField"}),
                                 help_text="Recipe JSON (quant.recipes): name, default_type or extends, rules, fallbacks")
    checkpoint = forms.ModelChoiceField(queryset=models.Checkpoint.objects.all(), required=False,
                                        help_text="Plan preview for this checkpoint (from its config.json; no weights)")

    def clean_definition(self):
        try:
            data = json.loads(self.cleaned_data["definition"])
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"not valid JSON: {exc}") from None
        from quant import recipes

        try:
            recipes.load_recipe(data)
        except recipes.RecipeError as exc:
            raise forms.ValidationError(str(exc)) from None
        return data


def plan_preview(checkpoint: models.Checkpoint, definition: dict) -> dict:
    """What the recipe would make of this checkpoint: size, bits per weight, bytes per type."""
    from quant import planner, recipes

    plan = planner.plan(checkpoint.config, recipes.load_recipe(definition))
    return {"total_bytes": plan.total_bytes, "total_gib": plan.total_bytes / 2**30,
            "bits_per_weight": plan.bits_per_weight, "n_params": plan.n_params, "types": plan.type_summary()}


@admin.register(models.Recipe)
class RecipeAdmin(ReadOnlyAdmin):
    list_display = ["name", "version", "sha256", "builtin", "created_by", "created_at"]
    list_filter = ["builtin", "name"]
    change_list_template = "admin/registry/recipe/change_list.html"

    def get_urls(self):
        editor = path("new-version/", self.admin_site.admin_view(self.editor_view), name="registry_recipe_editor")
        return [editor] + super().get_urls()

    def editor_view(self, request):
        """Paste JSON, preview the plan for a checkpoint (dry run), then save it as a new immutable version."""
        if not request.user.has_perm("registry.add_recipe"):
            raise PermissionDenied
        initial = {}
        if request.GET.get("from"):
            base = get_object_or_404(models.Recipe, pk=request.GET["from"])
            initial["definition"] = json.dumps(base.definition, indent=2)
        form = RecipeEditorForm(request.POST or None, initial=initial)
        preview = None
        if request.method == "POST" and form.is_valid():
            definition, checkpoint = form.cleaned_data["definition"], form.cleaned_data["checkpoint"]
            if "_save" in request.POST:
                try:
                    recipe, created = models.Recipe.register(definition, user=request.user)
                except ValidationError as exc:
                    form.add_error("definition", "; ".join(exc.messages))
                else:
                    if created:
                        messages.success(request, f"saved {recipe} ({recipe.sha256[:12]})")
                    else:
                        messages.info(request, f"identical to {recipe}: nothing new saved")
                    return redirect(reverse("admin:registry_recipe_changelist"))
            elif checkpoint is not None:
                try:
                    preview = plan_preview(checkpoint, definition)
                except (KeyError, ValueError) as exc:
                    form.add_error("checkpoint", f"cannot plan {checkpoint}: {exc}")
            else:
                form.add_error("checkpoint", "choose a checkpoint to preview the plan")
        context = dict(self.admin_site.each_context(request), title="Recipe editor", form=form, preview=preview,
                       opts=self.model._meta)
        return TemplateResponse(request, "admin/registry/recipe/editor.html", context)


class ShardJobInline(admin.TabularInline):
    """A split job's shard jobs, one per GGUF file (registry.shards), read-only."""

    model = models.ShardJob
    fields = ["index", "file_name", "planned_bytes", "state", "progress", "worker", "attempts", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(models.QuantizationJob)
class QuantizationJobAdmin(ReadOnlyAdmin):
    list_display = ["pk", "checkpoint", "recipe", "state", "progress", "step", "worker", "attempts", "created_at"]
    list_filter = ["state"]
    inlines = [ShardJobInline]


@admin.register(models.ImatrixJob)
class ImatrixJobAdmin(ReadOnlyAdmin):
    list_display = ["pk", "checkpoint", "dataset", "chunks", "n_ctx", "state", "progress", "step", "worker",
                    "created_at"]
    list_filter = ["state"]


@admin.register(models.ImatrixArtifact)
class ImatrixArtifactAdmin(ReadOnlyAdmin):
    list_display = ["pk", "checkpoint", "checkpoint_revision", "dataset", "chunks", "n_ctx", "chunk_count",
                    "experts_never_routed", "sha256", "created_at"]


@admin.register(models.CalibrationDataset)
class CalibrationDatasetAdmin(ReadOnlyAdmin):
    list_display = ["name", "language", "domain", "size", "sha256", "builtin", "source", "created_at"]


@admin.register(models.Variant)
class VariantAdmin(ReadOnlyAdmin):
    list_display = ["pk", "checkpoint", "recipe", "status", "total_bytes", "bits_per_weight", "created_at"]
    list_filter = ["status"]


class DecisionForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), required=False)
    override = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), required=False,
        label="Override justification",
        help_text="Only to approve a candidate that fails its release policy: why it should be released anyway "
                  "(audited, and shown on the release, the dashboard and the model card).")


@admin.register(models.Release)
class ReleaseAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "state", "requested_by", "decided_by", "decided_at", "review_link"]
    list_filter = ["state"]
    list_select_related = ["variant__checkpoint", "variant__recipe", "requested_by", "decided_by"]
    actions = ["review_selected"]

    @admin.display(description="review")
    def review_link(self, obj):
        url = reverse("admin:registry_release_review", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, "review" if obj.state == obj.State.CANDIDATE else "details")

    @admin.action(description="Review the selected release (approve / reject)")
    def review_selected(self, request, queryset):
        return redirect(reverse("admin:registry_release_review", args=[queryset.first().pk]))

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or is_approver(request.user)

    def get_urls(self):
        review = path("<int:pk>/review/", self.admin_site.admin_view(self.review_view), name="registry_release_review")
        return [review] + super().get_urls()

    def review_view(self, request, pk: int):
        """The evidence (registry.review: drop, policy verdict, types, siblings, fit), then approve or reject."""
        release = get_object_or_404(models.Release.objects.select_related(
            "variant__checkpoint", "variant__recipe", "requested_by", "decided_by"), pk=pk)
        if not (is_approver(request.user) or request.user.has_perm("registry.view_release")):
            raise PermissionDenied
        form = DecisionForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            reason = form.cleaned_data["reason"]
            try:
                if "_approve" in request.POST:
                    publishing.approve(release, request.user, reason, form.cleaned_data["override"])
                elif "_reject" in request.POST:
                    release.reject(request.user, reason)
                messages.success(request, f"{release} is {release.state}")
                return redirect(reverse("admin:registry_release_changelist"))
            except (ValidationError, PermissionDenied) as exc:
                messages.error(request, "; ".join(getattr(exc, "messages", None) or [str(exc)]))
        variant = release.variant
        context = dict(
            self.admin_site.each_context(request), title=f"Review {release}", release=release, variant=variant,
            files=variant.files.all(), evidence=review.of(release), form=form,
            can_decide=is_approver(request.user) and release.requested_by_id != request.user.pk
            and release.state == models.Release.State.CANDIDATE,
            size_gib=variant.total_bytes / 2**30, opts=self.model._meta)
        return TemplateResponse(request, "admin/registry/release/review.html", context)


@admin.register(models.Tag)
class TagAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "kind", "release", "updated_by", "updated_at"]
    list_filter = ["kind"]


@admin.register(models.AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    """Append-only: no add, change or delete, even for superusers; approvers and auditors read it."""

    list_display = ["at", "actor", "action", "object_type", "object_id"]
    list_filter = ["action", "object_type"]
    search_fields = ["actor", "action", "object_id"]
    date_hierarchy = "at"

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or can_read_audit_log(request.user)

    def get_actions(self, request):
        return {}
