"""Websocket routes of the app, wrapped by the host project's ``asgi.py``."""

from django.urls import path

from anyreach_listen.consumers import ConversationEventsConsumer

EVENTS_ROUTE = "listen-events"

websocket_urlpatterns = [
    path("ws/listen/events/", ConversationEventsConsumer.as_asgi(), name=EVENTS_ROUTE),
]


def events_path() -> str:
    """The path of the conversation event stream's websocket, e.g. ``/ws/listen/events/``.

    Derived from ``websocket_urlpatterns`` (which ``reverse()`` cannot see: they
    live outside the ROOT_URLCONF), so the route is written down once.
    """
    for pattern in websocket_urlpatterns:
        if pattern.name == EVENTS_ROUTE:
            return f"/{pattern.pattern}"
    raise LookupError(f"no websocket route named {EVENTS_ROUTE!r}")
