"""What a fresh registry starts with; running it again changes nothing."""
from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.db import transaction

from quant import configs
from quant.builtin_recipes import RECIPES
from registry import catalogue
from registry.access import AUDITORS_GROUP
from registry.models import APPROVERS_GROUP, Checkpoint, Recipe


@transaction.atomic
def bootstrap() -> dict[str, list[str]]:
    """Create the approvers and auditors groups, built-in recipes and catalogue checkpoints that are missing."""
    created: dict[str, list[str]] = {"groups": [], "recipes": [], "checkpoints": []}
    group, new = Group.objects.get_or_create(name=APPROVERS_GROUP)
    group.permissions.add(Permission.objects.get(codename="approve_release", content_type__app_label="registry"))
    if new:
        created["groups"].append(group.name)
    auditors, new = Group.objects.get_or_create(name=AUDITORS_GROUP)  # read the audit log, nothing else
    auditors.permissions.add(Permission.objects.get(codename="view_auditlog", content_type__app_label="registry"))
    if new:
        created["groups"].append(auditors.name)
    for definition in RECIPES:
        recipe, new = Recipe.register(definition, builtin=True)
        if new:
            created["recipes"].append(str(recipe))
    for entry in catalogue.CHECKPOINTS:
        if Checkpoint.objects.filter(name=entry["name"]).exists():
            continue
        config = configs.load_config(entry["hf_repo"])
        Checkpoint.register(config=config, **entry)
        created["checkpoints"].append(entry["name"])
    return created
