"""Websocket routes of the app, wrapped by the host project's ``asgi.py``."""

from django.urls import path

from .consumers import ConversationEventsConsumer

websocket_urlpatterns = [
    path("ws/listen/events/", ConversationEventsConsumer.as_asgi()),
]
