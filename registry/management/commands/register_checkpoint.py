"""Register a checkpoint from a local directory or a Hub repo id (its config.json is validated)."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from registry.checkpoints import resolve_config
from registry.models import Checkpoint


class Command(BaseCommand):
    help = "Register a checkpoint: NAME FAMILY and --path DIR or --hf-repo OWNER/NAME [--revision REV]."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("family")
        parser.add_argument("--path", default="", help="local directory holding config.json and the weights")
        parser.add_argument("--hf-repo", default="")
        parser.add_argument("--revision", default="")
        parser.add_argument("--dtype", default="BF16", choices=Checkpoint.Dtype.values)

    def handle(self, *args, name, family, path, hf_repo, revision, dtype, **options):
        try:
            config, revision = resolve_config(local_path=path, hf_repo=hf_repo, revision=revision)
            checkpoint = Checkpoint.register(name=name, family=family, config=config, hf_repo=hf_repo,
                                             revision=revision, local_path=path, source_dtype=dtype)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(f"registered {checkpoint.name}: {checkpoint.architecture}, "
                          f"{checkpoint.parameter_count:,} parameters")
