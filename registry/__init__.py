"""The registry Django app: checkpoints, recipes, jobs, variants, releases, tags, audit log."""
