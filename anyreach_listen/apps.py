from django.apps import AppConfig


class AnyreachListenConfig(AppConfig):
    name = "anyreach_listen"
    verbose_name = "Anyreach live listen"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the system checks and the revocation and key cache signal receivers.
        from anyreach_listen import checks  # noqa: F401
        from anyreach_listen.access import key_cache  # noqa: F401
        from anyreach_listen.listening import signals  # noqa: F401
