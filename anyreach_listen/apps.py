from django.apps import AppConfig


class AnyreachListenConfig(AppConfig):
    name = "anyreach_listen"
    verbose_name = "Anyreach live listen"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
