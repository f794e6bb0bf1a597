"""Websocket routes of the app, wrapped by the host project's ``asgi.py``."""

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
