"""URLconf of the platform API (mounted at the site root by the host project)."""

from django.urls import path, re_path

from . import api, errors, openapi

app_name = "anyreach_listen"

urlpatterns = [
    path(
        "core/conversations/<str:conversation_id>/listener-token",
        api.listener_token,
        name="listener-token",
    ),
    path("core/openapi.json", openapi.openapi_document, name="openapi"),
    re_path(r"^core/(?P<path>.*)$", errors.api_not_found),
]
