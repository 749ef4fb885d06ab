"""Idempotent setup: the approvers group, the built-in recipes and the DeepSeek catalogue."""
from __future__ import annotations

from django.core.management.base import BaseCommand

from registry.bootstrap import bootstrap


class Command(BaseCommand):
    help = "Register the built-in recipes and DeepSeek checkpoints and create the approvers group (idempotent)."

    def handle(self, *args, **options):
        created = bootstrap()
        for kind, names in created.items():
            self.stdout.write(f"{kind}: {len(names)} new" + (f" ({', '.join(names)})" if names else ""))
