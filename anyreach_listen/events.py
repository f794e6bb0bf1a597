"""Conversation, listener, alert, transcript, guidance and takeover events, published to the
channel layer per organization.

Publishers (the conversations service, webhooks, revocation) call these inside
their transaction; the message is sent once it commits. The websocket consumer
in ``consumers.py`` forwards it to the browsers of people who may see it. Each
message is a shape declared below (its payloads: ``api/shapes.py``), sent as plain JSON.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from anyreach_listen.api.shapes import Guidance as GuidanceShape
from anyreach_listen.api.shapes import (
    Listener,
    LiveAlert,
    LiveConversation,
    LiveSegment,
    Shape,
)
from anyreach_listen.api.shapes import Takeover as TakeoverShape
from anyreach_listen.conf import listen_settings

if TYPE_CHECKING:  # annotations only: models publish nothing (conversations.py and the
    # other services do), and this module needs no model at import time
    from anyreach_listen.models import (
        Alert,
        Conversation,
        Guidance,
        ListenSession,
        Takeover,
        TranscriptSegment,
    )

CONVERSATION_UPDATED = "conversation.updated"
LISTENER_UPDATED = "listener.updated"
ACCESS_CHANGED = "access.changed"
SESSION_ENDED = "session.ended"
ALERT_RAISED = "alert.raised"
TRANSCRIPT_SEGMENT = "transcript.segment"
GUIDANCE_UPDATED = "guidance.updated"
TAKEOVER_UPDATED = "takeover.updated"
# What a ``takeover.updated`` message's ``event`` says happened.
TAKEOVER_EVENTS = ("started", "renewed", "joined", "left", "ended", "resumed")


def organization_group(organization_id: uuid.UUID | str) -> str:
    # Channel-layer group names allow only ASCII letters, digits, '-', '_' and '.'.
    return f"{listen_settings.GROUP_PREFIX}.org.{organization_id}"


class ConversationMessage(Shape):
    """A ``conversation.updated`` group message: the payload and who may see it.

    ``organization_id`` and ``team_id`` let each consumer decide visibility in
    memory (``UserAccess.sees``), so one event to N sockets costs no query each.
    """

    type: str = CONVERSATION_UPDATED
    event: str  # what happened or what ended the call, e.g. ``room_started``
    conversation_id: uuid.UUID
    organization_id: uuid.UUID
    team_id: uuid.UUID | None
    conversation: LiveConversation


class ListenerMessage(ConversationMessage):
    type: str = LISTENER_UPDATED
    listen_session_id: uuid.UUID
    listener: Listener  # who, for "Listening now"


class AlertMessage(ConversationMessage):
    type: str = ALERT_RAISED
    alert: LiveAlert


class SegmentMessage(ConversationMessage):
    type: str = TRANSCRIPT_SEGMENT
    segment: LiveSegment


class GuidanceMessage(ConversationMessage):
    """``guidance.updated``: given (pending), delivered or failed (transcript readers only)."""

    type: str = GUIDANCE_UPDATED
    guidance: GuidanceShape


class TakeoverMessage(ConversationMessage):
    """``takeover.updated``: ``event`` is one of ``TAKEOVER_EVENTS`` ("resumed" carries the
    resume's outcome: ``resumed_at``, or ``resume_error``); for those who may see a call's
    listeners, like ``listener.updated``."""

    type: str = TAKEOVER_UPDATED
    takeover: TakeoverShape


class AccessChangedMessage(Shape):
    type: str = ACCESS_CHANGED


class SessionEndedMessage(Shape):
    type: str = SESSION_ENDED
    session: str  # session_fingerprint of the login session


def _send_on_commit(group: str, shape: Shape) -> None:
    message = shape.as_json()  # plain JSON: any channel layer carries it

    def send() -> None:
        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(group, message)

    # robust: a channel-layer outage must not stop later callbacks (e.g. the
    # LiveKit removal of a revoked listener) nor fail the committed request.
    transaction.on_commit(send, robust=True)


def live_conversation(conversation: Conversation) -> LiveConversation:
    return LiveConversation(
        id=conversation.pk,
        status=conversation.status,
        status_display=conversation.get_status_display(),
        is_active=conversation.is_active,
        agent_label=conversation.agent_label,
        caller_label=conversation.caller_label,
        team=conversation.team.name if conversation.team else None,
        started_at=conversation.started_at,
        ended_at=conversation.ended_at,
    )


def _about(conversation: Conversation, event: str) -> dict[str, Any]:
    """The fields every conversation message has."""
    return {
        "event": event,
        "conversation_id": conversation.pk,
        "organization_id": conversation.organization_id,
        "team_id": conversation.team_id,
        "conversation": live_conversation(conversation),
    }


def conversation_message(conversation: Conversation, event: str) -> dict[str, Any]:
    """A ``conversation.updated`` group message, as sent (see ``ConversationMessage``)."""
    return ConversationMessage(**_about(conversation, event)).as_json()


def publish_conversation(conversation: Conversation, event: str) -> None:
    """``event`` says what happened or what ended the call, e.g. ``room_started``."""
    message = ConversationMessage(**_about(conversation, event))
    _send_on_commit(organization_group(conversation.organization_id), message)


def live_listener(session: ListenSession) -> Listener:
    return Listener(
        id=session.pk, via=session.via, name=session.display_name, joined_at=session.joined_at
    )


def publish_listener(session: ListenSession, event: str) -> None:
    """``event`` is ``joined``, ``left`` or ``revoked``."""
    conversation = session.conversation
    message = ListenerMessage(
        **_about(conversation, event),
        listen_session_id=session.pk,
        listener=live_listener(session),
    )
    _send_on_commit(organization_group(conversation.organization_id), message)


def live_alert(alert: Alert) -> LiveAlert:
    return LiveAlert(
        id=alert.pk,
        rule_id=alert.rule_id,
        severity=alert.rule.severity,
        phrase=alert.rule.phrase,
        role=alert.segment.role,
        segment_id=alert.segment.segment_id,
        raised_at=alert.raised_at,
    )


def publish_alert(alert: Alert, conversation: Conversation) -> None:
    """An alert was raised in ``conversation`` (its team loaded: the payload names it)."""
    message = AlertMessage(**_about(conversation, "alert"), alert=live_alert(alert))
    _send_on_commit(organization_group(conversation.organization_id), message)


def live_segment(segment: TranscriptSegment) -> LiveSegment:
    return LiveSegment(
        id=segment.segment_id, role=segment.role, text=segment.text, at=segment.first_seen_at
    )


def publish_segment(segment: TranscriptSegment, conversation: Conversation) -> None:
    """``segment`` was made final in ``conversation`` (its team loaded). Finals only:
    interim text changes word by word and would cost a message per word per socket."""
    message = SegmentMessage(**_about(conversation, "transcript"), segment=live_segment(segment))
    _send_on_commit(organization_group(conversation.organization_id), message)


def live_guidance(guidance: Guidance) -> GuidanceShape:
    return GuidanceShape(
        id=guidance.pk,
        mode=guidance.mode,
        text=guidance.text,
        status=guidance.status,
        reason=guidance.reason,
        author=guidance.display_name,
        created_at=guidance.created_at,
        delivered_at=guidance.delivered_at,
        latency_ms=guidance.latency_ms,
    )


def publish_guidance(guidance: Guidance) -> None:
    """``guidance`` was given, delivered or failed (``event``: its status)."""
    conversation = guidance.conversation
    message = GuidanceMessage(
        **_about(conversation, guidance.status), guidance=live_guidance(guidance)
    )
    _send_on_commit(organization_group(conversation.organization_id), message)


def live_takeover(takeover: Takeover) -> TakeoverShape:
    return TakeoverShape(
        id=takeover.pk,
        holder=takeover.display_name,
        started_at=takeover.started_at,
        expires_at=takeover.expires_at,
        joined_at=takeover.joined_at,
        ended_at=takeover.ended_at,
        ended_by=takeover.ended_by or None,
        resumed_at=takeover.resumed_at,
        resume_error=takeover.resume_error,
    )


def publish_takeover(takeover: Takeover, event: str) -> None:
    """``takeover`` (its conversation and holder loaded) changed: ``event`` is one of
    ``TAKEOVER_EVENTS``."""
    conversation = takeover.conversation
    message = TakeoverMessage(**_about(conversation, event), takeover=live_takeover(takeover))
    _send_on_commit(organization_group(conversation.organization_id), message)


def user_group(user_id: object) -> str:
    return f"{listen_settings.GROUP_PREFIX}.user.{user_id}"


def publish_access_changed(user_id: object) -> None:
    """The user, their memberships or teams changed: their open sockets check
    their session again and reload what they may see."""
    _send_on_commit(user_group(user_id), AccessChangedMessage())


def session_fingerprint(session_key: str) -> str:
    """Names a login session on the channel layer without revealing its key."""
    return hashlib.sha256(session_key.encode()).hexdigest()


def publish_session_ended(user_id: object, session_key: str) -> None:
    """The user signed out of one session: its sockets close (others stay)."""
    message = SessionEndedMessage(session=session_fingerprint(session_key))
    _send_on_commit(user_group(user_id), message)
