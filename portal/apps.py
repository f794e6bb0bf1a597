from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The supervisor portal: views, templates and static files built on anyreach_listen."""

    name = "portal"
    verbose_name = "Supervisor portal"
