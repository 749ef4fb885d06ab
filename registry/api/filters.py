"""Query filters with the names users type: ?checkpoint=deepseek-r1&recipe=DQ3_K_M&status=ready."""
from __future__ import annotations

import django_filters

from registry.models import AuditLog, Recipe, Release, Variant


class VariantFilter(django_filters.FilterSet):
    checkpoint = django_filters.CharFilter(field_name="checkpoint__name")
    recipe = django_filters.CharFilter(field_name="recipe__name", lookup_expr="iexact")
    status = django_filters.ChoiceFilter(choices=Variant.Status.choices)

    class Meta:
        model = Variant
        fields = ["checkpoint", "recipe", "status"]


class AuditLogFilter(django_filters.FilterSet):
    """?actor=alice&action=release.approve&object_type=registry.Release&object_id=7&since=…&until=… (ISO 8601)."""

    since = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="lte")

    class Meta:
        model = AuditLog
        fields = ["actor", "action", "object_type", "object_id", "since", "until"]

    def is_valid(self) -> bool:
        """An empty ?since= or ?until= is a 400 like any other value that is not a date-time
        (django-filter would read it as "no bound")."""
        self.form.errors  # cleans the form; errors added after it stand
        for name in ("since", "until"):
            if name in self.data and not str(self.data[name]).strip():
                self.form.add_error(name, "expected an ISO 8601 date-time, got an empty value")
        return super().is_valid()


class RecipeFilter(django_filters.FilterSet):
    """?builtin=true|false: anything else is a 400 (django-filter's BooleanFilter would ignore it)."""

    builtin = django_filters.ChoiceFilter(choices=[("true", "true"), ("false", "false")], method="filter_builtin")

    class Meta:
        model = Recipe
        fields = ["name", "builtin"]

    def filter_builtin(self, queryset, name: str, value: str):
        return queryset.filter(builtin=value == "true")


class ReleaseFilter(django_filters.FilterSet):
    """?variant=<id>: an id with no variant lists nothing (a model choice filter would answer 400)."""

    variant = django_filters.NumberFilter(field_name="variant_id")

    class Meta:
        model = Release
        fields = ["state", "variant", "variant__checkpoint__name"]
