"""``POST /livekit/webhook``: LiveKit's room and participant events, verified.

LiveKit signs each delivery: the ``Authorization`` header (no ``Bearer``) holds
a JWT made with the API secret whose ``sha256`` claim is the body's hash;
``WebhookReceiver`` checks both. Events move the conversation matched by room
name and fill the listen audit:

- ``room_started``: in progress, ``started_at`` (if not set yet);
- ``room_finished``: completed, ``ended_at`` (if still active); open listener
  sessions get their ``left_at``;
- ``participant_joined`` / ``participant_left`` of an AGENT: ``agent_joined`` /
  ``agent_left`` events (the status is kept);
- of a listener (identity ``listener-…``): ``ListenSession.joined_at`` /
  ``left_at``. A listener whose session was revoked before it joined is removed.

Rooms without a conversation are acknowledged and ignored. Every handler is
idempotent (state guards), and deliveries already handled are recognized by
their event id, so LiveKit's retries and duplicates change nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from google.protobuf.json_format import ParseError
from livekit.api import ParticipantInfo, TokenVerifier, WebhookEvent, WebhookReceiver

from .conf import listen_settings
from .errors import ApiError, Errors, endpoint
from .events import publish_conversation, publish_listener
from .livekit_service import remove_listeners, run_sync
from .minting import LISTENER_IDENTITY_PREFIX
from .models import Conversation, ConversationStatus, ListenSession

logger = logging.getLogger(__name__)

SEEN_TTL = 24 * 3600  # seconds an event id is remembered for duplicate detection


def _seen_key(event_id: str) -> str:
    return f"{listen_settings.GROUP_PREFIX}:webhook:{event_id}"


@endpoint("POST")
def livekit_webhook(request: HttpRequest) -> JsonResponse:
    try:
        body = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(Errors.INVALID_PAYLOAD, "The body is not UTF-8.") from None
    receiver = WebhookReceiver(
        TokenVerifier(listen_settings.LIVEKIT_API_KEY, listen_settings.LIVEKIT_API_SECRET)
    )
    try:
        event = receiver.receive(body, request.headers.get("Authorization", ""))
    except ParseError:
        # The signature matched (checked first), the body is not a webhook event.
        raise ApiError(Errors.INVALID_PAYLOAD) from None
    except Exception as exc:
        # Never log the Authorization header: it is a signed token.
        logger.warning(
            "Rejected LiveKit webhook from %s: %s",
            request.META.get("REMOTE_ADDR", "?"),
            type(exc).__name__,
        )
        raise ApiError(Errors.INVALID_SIGNATURE) from None
    outcome = handle_event(event)
    return JsonResponse({"ok": True, "outcome": outcome})


def _event_time(event: WebhookEvent) -> dt.datetime:
    if event.created_at:
        return dt.datetime.fromtimestamp(event.created_at, tz=dt.UTC)
    return timezone.now()


def handle_event(event: WebhookEvent) -> str:
    """Apply one event; returns what was done (for the response and the tests)."""
    if event.id and cache.get(_seen_key(event.id)):
        return "duplicate"
    room_name = event.room.name if event.HasField("room") else ""
    conversation = (
        Conversation.objects.filter(livekit_room=room_name).first() if room_name else None
    )
    if conversation is None:
        outcome = "ignored"
    elif event.event == "room_started":
        outcome = _room_started(conversation.pk, event)
    elif event.event == "room_finished":
        outcome = _room_finished(conversation.pk, event)
    elif event.event in ("participant_joined", "participant_left"):
        outcome = _participant(conversation.pk, event)
    else:
        outcome = "ignored"
    if event.id:
        cache.set(_seen_key(event.id), True, SEEN_TTL)
    logger.info("LiveKit webhook %s room=%s: %s", event.event, room_name, outcome)
    return outcome


def _locked(conversation_id: uuid.UUID) -> Conversation:
    return (
        Conversation.objects.select_for_update()
        .select_related("organization")
        .get(pk=conversation_id)
    )


@transaction.atomic
def _room_started(conversation_id: uuid.UUID, event: WebhookEvent) -> str:
    conversation = _locked(conversation_id)
    changed: list[str] = []
    if conversation.status in (ConversationStatus.TRIGGERED, ConversationStatus.RINGING):
        conversation.status = ConversationStatus.IN_PROGRESS
        changed.append("status")
    if conversation.started_at is None and conversation.is_active:
        conversation.started_at = _event_time(event)
        changed.append("started_at")
    if event.room.sid and conversation.metadata.get("livekit_room_sid") != event.room.sid:
        conversation.metadata = {**conversation.metadata, "livekit_room_sid": event.room.sid}
        changed.append("metadata")
    if not changed:
        return "unchanged"
    conversation.save(update_fields=[*changed, "updated_at"])
    publish_conversation(conversation, "room_started")
    return "room_started"


@transaction.atomic
def _room_finished(conversation_id: uuid.UUID, event: WebhookEvent) -> str:
    conversation = _locked(conversation_id)
    ended = _event_time(event)
    outcome = "room_finished" if conversation.finish(ended, by="room_finished") else "unchanged"
    # Listeners still in the room when it closed have left with it.
    open_sessions = ListenSession.objects.select_for_update().filter(
        conversation=conversation, joined_at__isnull=False, left_at__isnull=True
    )
    for session in open_sessions:
        session.left_at = max(ended, session.joined_at) if session.joined_at else ended
        session.save(update_fields=["left_at"])
        publish_listener(session, "left")
    return outcome


def _participant(conversation_id: uuid.UUID, event: WebhookEvent) -> str:
    identity = event.participant.identity
    if identity.startswith(LISTENER_IDENTITY_PREFIX):
        return _listener(conversation_id, identity, event)
    if event.participant.kind == ParticipantInfo.Kind.AGENT:
        return _agent(conversation_id, event)
    return "ignored"


@transaction.atomic
def _agent(conversation_id: uuid.UUID, event: WebhookEvent) -> str:
    conversation = _locked(conversation_id)
    joined = event.event == "participant_joined"
    name = "agent_joined" if joined else "agent_left"
    agent = dict(conversation.metadata.get("agent") or {})
    agent["identity"] = event.participant.identity
    agent["joined_at" if joined else "left_at"] = _event_time(event).isoformat()
    conversation.metadata = {**conversation.metadata, "agent": agent}
    conversation.save(update_fields=["metadata", "updated_at"])
    publish_conversation(conversation, name)
    return name


def _listener(conversation_id: uuid.UUID, identity: str, event: WebhookEvent) -> str:
    at = _event_time(event)
    remove = False
    with transaction.atomic():
        session = (
            ListenSession.objects.select_for_update(of=("self",))
            .select_related("conversation")
            .filter(listener_identity=identity, conversation_id=conversation_id)
            .first()
        )
        if session is None:
            return "unknown_listener"
        if event.event == "participant_joined":
            if session.revoked_at is not None:
                # Revoked while its token was still unredeemed: take it out again.
                remove = True
                outcome = "listener_revoked"
            elif session.joined_at is None:
                session.joined_at = at
                session.save(update_fields=["joined_at"])
                publish_listener(session, "joined")
                outcome = "listener_joined"
            elif session.left_at is not None and at > session.left_at:
                session.left_at = None  # rejoined with the same token
                session.save(update_fields=["left_at"])
                publish_listener(session, "joined")
                outcome = "listener_joined"
            else:
                outcome = "unchanged"
        else:
            if session.left_at is None or at > session.left_at:
                session.left_at = at
                session.save(update_fields=["left_at"])
                publish_listener(session, "left")
                outcome = "listener_left"
            else:
                outcome = "unchanged"
    if remove and session.conversation.livekit_room:
        run_sync(remove_listeners([(session.conversation.livekit_room, identity)]))
    return outcome
