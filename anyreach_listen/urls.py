"""URLconf of the platform API (mounted at the site root by the host project)."""

from django.urls import path, re_path

from anyreach_listen import public
from anyreach_listen.api import errors, openapi
from anyreach_listen.api import views as api
from anyreach_listen.listening import user_tokens
from anyreach_listen.livekit import webhooks
from anyreach_listen.recorder import intake as recorder_intake

app_name = "anyreach_listen"

urlpatterns = [
    path("core/conversations", api.conversation_collection, name="conversations"),
    path(
        "core/conversations/<str:conversation_id>",
        api.conversation_detail,
        name="conversation",
    ),
    path(
        "core/conversations/<str:conversation_id>/listener-token",
        api.listener_token,
        name="listener-token",
    ),
    path(
        "core/conversations/<str:conversation_id>/transcript",
        api.transcript,
        name="transcript",
    ),
    path(
        "core/conversations/<str:conversation_id>/alerts",
        api.conversation_alerts,
        name="conversation-alerts",
    ),
    path(
        "core/conversations/<str:conversation_id>/listeners",
        api.conversation_listeners,
        name="conversation-listeners",
    ),
    path(
        "core/conversations/<str:conversation_id>/guidance",
        api.conversation_guidance,
        name="conversation-guidance",
    ),
    path(
        "core/conversations/<str:conversation_id>/takeover",
        api.conversation_takeover,
        name="conversation-takeover",
    ),
    path("core/alert-rules", api.alert_rule_collection, name="alert-rules"),
    path("core/alert-rules/<str:rule_id>", api.alert_rule_detail, name="alert-rule"),
    path("livekit/webhook", webhooks.livekit_webhook, name="livekit-webhook"),
    path("livekit/recorder", recorder_intake.recorder_delivery, name="recorder-delivery"),
    path("core/openapi.json", openapi.openapi_document, name="openapi"),
    path(
        "listen/conversations/<str:conversation_id>/token",
        user_tokens.listen_token,
        name="user-listen-token",
    ),
    path("public/listen-sdk", public.listen_sdk, name="listen-sdk"),
    path("public/listen", public.listen_frame, name="listen-frame"),
    path("public/listen-frame.js", public.listen_frame_script, name="listen-frame-js"),
    re_path(r"^core/(?P<path>.*)$", errors.api_not_found),
]
