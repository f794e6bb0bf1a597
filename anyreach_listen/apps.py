from django.apps import AppConfig


class AnyreachListenConfig(AppConfig):
    name = "anyreach_listen"
    verbose_name = "Anyreach live listen"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the system checks and the revocation signal receivers.
        from . import checks, signals  # noqa: F401
