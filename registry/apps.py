from django.apps import AppConfig
from django.db.models.signals import post_migrate


def create_cache_table(using: str = "default", **kwargs) -> None:
    """The database cache's table (settings.CACHES, where throttles count), wherever `migrate` runs.

    Django creates it only with `createcachetable`; tying it to migrate means no deployment, demo or
    test database can have the tables without it. A no-op when the cache is Redis.
    """
    from django.core.management import call_command

    call_command("createcachetable", database=using, verbosity=0)


class RegistryConfig(AppConfig):
    name = "registry"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(create_cache_table, sender=self)
