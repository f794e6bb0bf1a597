"""Conversation and listener events, published to the channel layer per organization.

Publishers (webhooks, revocation) call these after their database change is
committed; the websocket consumer in ``consumers.py`` forwards them to browsers.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from .conf import listen_settings

if TYPE_CHECKING:  # models publish events themselves (Conversation.finish)
    from .models import Conversation, ListenSession

CONVERSATION_UPDATED = "conversation.updated"
LISTENER_UPDATED = "listener.updated"


def organization_group(organization_id: uuid.UUID | str) -> str:
    # Channel-layer group names allow only ASCII letters, digits, '-', '_' and '.'.
    return f"{listen_settings.GROUP_PREFIX}.org.{organization_id}"


def _send_on_commit(group: str, message: dict[str, Any]) -> None:
    def send() -> None:
        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(group, message)

    # robust: a channel-layer outage must not stop later callbacks (e.g. the
    # LiveKit removal of a revoked listener) nor fail the committed request.
    transaction.on_commit(send, robust=True)


def publish_conversation(conversation: Conversation, event: str) -> None:
    """``event`` says what happened or what ended the call, e.g. ``room_started``."""
    _send_on_commit(
        organization_group(conversation.organization_id),
        {
            "type": CONVERSATION_UPDATED,
            "event": event,
            "conversation_id": str(conversation.pk),
            "status": conversation.status,
        },
    )


def publish_listener(session: ListenSession, event: str) -> None:
    """``event`` is ``joined``, ``left`` or ``revoked``."""
    _send_on_commit(
        organization_group(session.conversation.organization_id),
        {
            "type": LISTENER_UPDATED,
            "event": event,
            "conversation_id": str(session.conversation_id),
            "listen_session_id": str(session.pk),
        },
    )
