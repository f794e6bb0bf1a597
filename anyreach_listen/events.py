"""Conversation, listener, alert and transcript events, published to the channel layer per
organization.

Publishers (the conversations service, webhooks, revocation) call these inside
their transaction; the message is sent once it commits. The websocket consumer
in ``consumers.py`` forwards it to the browsers of people who may see it.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from anyreach_listen.conf import listen_settings

if TYPE_CHECKING:  # models publish events themselves (Conversation.finish)
    from anyreach_listen.models import Alert, Conversation, ListenSession, TranscriptSegment

CONVERSATION_UPDATED = "conversation.updated"
LISTENER_UPDATED = "listener.updated"
ACCESS_CHANGED = "access.changed"
SESSION_ENDED = "session.ended"
ALERT_RAISED = "alert.raised"
TRANSCRIPT_SEGMENT = "transcript.segment"


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


def conversation_payload(conversation: Conversation) -> dict[str, Any]:
    """What browsers get about a conversation (built once per event, not per socket)."""
    return {
        "id": str(conversation.pk),
        "status": conversation.status,
        "status_display": conversation.get_status_display(),
        "is_active": conversation.is_active,
        "agent_label": conversation.agent_label,
        "caller_label": conversation.caller_label,
        "team": conversation.team.name if conversation.team else None,
        "started_at": conversation.started_at.isoformat() if conversation.started_at else None,
        "ended_at": conversation.ended_at.isoformat() if conversation.ended_at else None,
    }


def conversation_message(conversation: Conversation, event: str) -> dict[str, Any]:
    """A ``conversation.updated`` group message: the payload and who may see it.

    ``organization_id`` and ``team_id`` let each consumer decide visibility in
    memory (``UserAccess.sees``), so one event to N sockets costs no query each.
    """
    return {
        "type": CONVERSATION_UPDATED,
        "event": event,
        "conversation_id": str(conversation.pk),
        "organization_id": str(conversation.organization_id),
        "team_id": str(conversation.team_id) if conversation.team_id else None,
        "conversation": conversation_payload(conversation),
    }


def publish_conversation(conversation: Conversation, event: str) -> None:
    """``event`` says what happened or what ended the call, e.g. ``room_started``."""
    _send_on_commit(
        organization_group(conversation.organization_id),
        conversation_message(conversation, event),
    )


def publish_listener(session: ListenSession, event: str) -> None:
    """``event`` is ``joined``, ``left`` or ``revoked``."""
    message = conversation_message(session.conversation, event)
    message |= {"type": LISTENER_UPDATED, "listen_session_id": str(session.pk)}
    _send_on_commit(organization_group(session.conversation.organization_id), message)


def alert_payload(alert: Alert) -> dict[str, Any]:
    """What browsers may get about an alert: never the segment's text. ``phrase``,
    ``role`` and ``segment_id`` reach only people who may read the transcript
    (the consumer drops them for the others)."""
    return {
        "id": str(alert.pk),
        "rule_id": str(alert.rule_id),
        "severity": alert.rule.severity,
        "phrase": alert.rule.phrase,
        "role": alert.segment.role,
        "segment_id": alert.segment.segment_id,
        "raised_at": alert.raised_at.isoformat(),
    }


def publish_alert(alert: Alert, conversation: Conversation) -> None:
    """An alert was raised in ``conversation`` (its team loaded: the payload names it)."""
    message = conversation_message(conversation, "alert")
    message |= {"type": ALERT_RAISED, "alert": alert_payload(alert)}
    _send_on_commit(organization_group(conversation.organization_id), message)


def segment_payload(segment: TranscriptSegment) -> dict[str, Any]:
    """A final line as browsers get it (transcript readers only, ``consumers.py``)."""
    return {
        "id": segment.segment_id,
        "role": segment.role,
        "text": segment.text,
        "at": segment.first_seen_at.isoformat(),
    }


def publish_segment(segment: TranscriptSegment, conversation: Conversation) -> None:
    """``segment`` was made final in ``conversation`` (its team loaded). Finals only:
    interim text changes word by word and would cost a message per word per socket."""
    message = conversation_message(conversation, "transcript")
    message |= {"type": TRANSCRIPT_SEGMENT, "segment": segment_payload(segment)}
    _send_on_commit(organization_group(conversation.organization_id), message)


def user_group(user_id: object) -> str:
    return f"{listen_settings.GROUP_PREFIX}.user.{user_id}"


def publish_access_changed(user_id: object) -> None:
    """The user, their memberships or teams changed: their open sockets check
    their session again and reload what they may see."""
    _send_on_commit(user_group(user_id), {"type": ACCESS_CHANGED})


def session_fingerprint(session_key: str) -> str:
    """Names a login session on the channel layer without revealing its key."""
    return hashlib.sha256(session_key.encode()).hexdigest()


def publish_session_ended(user_id: object, session_key: str) -> None:
    """The user signed out of one session: its sockets close (others stay)."""
    _send_on_commit(
        user_group(user_id), {"type": SESSION_ENDED, "session": session_fingerprint(session_key)}
    )
