from django.apps import AppConfig


class DemoConfig(AppConfig):
    """What only the demo and the tests need: simulated calls, the dev LiveKit runner, seed data.

    Installed by the portal project only; the ``anyreach-listen`` wheel does not contain it.
    """

    name = "demo"
    verbose_name = "Demo calls"
