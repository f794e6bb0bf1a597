"""``POST /livekit/webhook``: LiveKit's room and participant events, verified.

LiveKit's webhooks tell us when a call's room opens or closes and who joins or leaves it.
Each delivery's signature is checked (``WebhookReceiver``); its event moves the call matched
by room name (``conversations.py``), registers a room's call when its metadata says whose it
is, and moves listen sessions (``listening/sessions.py``) and takeovers' supervisors
(``assist/takeover.py``). Events, outcomes and retries: docs/internals/calls.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from django.core.cache import cache
from django.db import DatabaseError, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from google.protobuf.json_format import ParseError
from livekit.api import ParticipantInfo, TokenVerifier, WebhookEvent, WebhookReceiver

from anyreach_listen import conversations
from anyreach_listen.access import ratelimit
from anyreach_listen.access.client_address import client_address
from anyreach_listen.api.body_limit import WEBHOOK_MAX_BODY
from anyreach_listen.api.errors import ApiError, Errors, endpoint
from anyreach_listen.assist import takeover
from anyreach_listen.conf import listen_settings
from anyreach_listen.listening import sessions
from anyreach_listen.listening.minting import LISTENER_IDENTITY_PREFIX
from anyreach_listen.livekit import auto_registration, room_ownership
from anyreach_listen.livekit.service import remove_listeners, run_sync
from anyreach_listen.models import Conversation, ListenSession
from anyreach_listen.recorder import dispatch as recorder_dispatch

logger = logging.getLogger(__name__)

SEEN_TTL = 24 * 3600  # seconds an event id is remembered for duplicate detection


def _seen_key(event_id: str) -> str:
    return f"{listen_settings.GROUP_PREFIX}:webhook:{event_id}"


@endpoint("POST", max_body=WEBHOOK_MAX_BODY)
def livekit_webhook(request: HttpRequest) -> JsonResponse:
    # The signature is checked before any throttle: a correctly signed event is never
    # refused, whoever shares LiveKit's address (a lost room_started would leave a room
    # with the conversation that claimed it first).
    try:
        body = request.body.decode("utf-8")  # at most WEBHOOK_MAX_BODY bytes (``endpoint``)
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
            client_address(request) or "?",
            type(exc).__name__,
        )
        # 401, or 429 once the address sent too many bad signatures (``ratelimit.py``).
        raise ratelimit.signature_refusal(request, ApiError(Errors.INVALID_SIGNATURE)) from None
    try:
        outcome = handle_event(event)
    except DatabaseError as exc:
        # Nothing was applied (one transaction per event): a 5xx makes LiveKit retry.
        logger.warning(
            "LiveKit webhook %s (%s) not applied, answered 500 for a retry: %s",
            event.event,
            event.id,
            type(exc).__name__,
        )
        raise ApiError(Errors.INTERNAL_ERROR) from None
    return JsonResponse({"ok": True, "outcome": outcome})


def _event_time(event: WebhookEvent) -> dt.datetime:
    if event.created_at:
        return dt.datetime.fromtimestamp(event.created_at, tz=dt.UTC)
    return timezone.now()


def handle_event(event: WebhookEvent) -> str:
    """Apply one event; returns what was done (for the response and the tests)."""
    if event.id and _seen(event.id):
        return "duplicate"
    room_name = event.room.name if event.HasField("room") else ""
    removals: list[tuple[str, str]] = []
    with transaction.atomic():
        outcome = _apply(event, room_name, removals)
    if removals:
        # After the commit: no lock is held while LiveKit answers.
        run_sync(remove_listeners(removals))
    if event.id:
        _remember(event.id)
    logger.info("LiveKit webhook %s room=%s: %s", event.event, room_name, outcome)
    return outcome


def _apply(event: WebhookEvent, room_name: str, removals: list[tuple[str, str]]) -> str:
    conversation = _conversation_of(room_name) if room_name else None
    registered = False
    if event.event in ("room_started", "participant_joined"):
        owner = room_ownership.owner_named(event.room.metadata)
        if conversation is not None and owner not in (None, conversation.organization_id):
            # The platform gave the room to another organization: a tenant's earlier
            # claim loses it, and the owner's conversation is registered.
            conversations.lose_room(conversation, at=_event_time(event))
            conversation = None
        if conversation is None:
            conversation = auto_registration.register_room(event.room, at=_event_time(event))
            registered = conversation is not None
    if conversation is None:
        return "ignored"
    if event.event == "room_started":
        started = conversations.room_started(
            conversation, at=_event_time(event), room_sid=event.room.sid
        )
        # The room is open now: a call registered before it opened gets its recorders.
        recorder_dispatch.dispatch_on_commit(conversation)
        return "registered" if registered else "room_started" if started else "unchanged"
    if event.event == "room_finished":
        finished = conversations.finish(
            conversation, at=_event_time(event), by="room_finished", room_closed=True
        )
        return "room_finished" if finished else "unchanged"
    if event.event in ("participant_joined", "participant_left"):
        return _participant(conversation, event, removals)
    return "ignored"


def _seen(event_id: str) -> bool:
    # Best effort: the handlers are idempotent, so a cache outage must not fail deliveries.
    try:
        return bool(cache.get(_seen_key(event_id)))
    except Exception as exc:
        logger.warning("Webhook id cache unavailable: %s", type(exc).__name__)
        return False


def _remember(event_id: str) -> None:
    try:
        cache.set(_seen_key(event_id), True, SEEN_TTL)
    except Exception as exc:
        logger.warning("Webhook id cache unavailable: %s", type(exc).__name__)


def _conversation_of(room_name: str) -> Conversation | None:
    """The room's conversation: the active one, else the latest (a room name can be reused)."""
    rooms = Conversation.objects.in_room(room_name)
    return rooms.active().first() or rooms.order_by("-created_at").first()


def _participant(
    conversation: Conversation, event: WebhookEvent, removals: list[tuple[str, str]]
) -> str:
    identity = event.participant.identity
    if identity.startswith(LISTENER_IDENTITY_PREFIX):
        return _listener(conversation.pk, identity, event, removals)
    if identity.startswith(takeover.IDENTITY_PREFIX):
        # A supervisor who took the call over: present (the sweep ends a takeover whose
        # holder is gone too long), or out again when it holds no takeover of this call.
        outcome, remove = takeover.participant_event(
            conversation,
            identity,
            joined=event.event == "participant_joined",
            at=_event_time(event),
        )
        if remove:
            removals.append((event.room.name, identity))
        return outcome
    if recorder_dispatch.is_recorder(event.participant):
        # Our own transcript recorder (an agent too, but not the call's): one that left
        # a live call is replaced at once.
        if event.event == "participant_left":
            recorder_dispatch.dispatch_on_commit(conversation, gone=identity)
            return "recorder_left"
        return "recorder_joined"
    if event.participant.kind == ParticipantInfo.Kind.AGENT:
        return conversations.agent_presence(
            conversation,
            identity=identity,
            joined=event.event == "participant_joined",
            at=_event_time(event),
        )
    return "ignored"


def _listener(
    conversation_id: uuid.UUID, identity: str, event: WebhookEvent, removals: list[tuple[str, str]]
) -> str:
    at = _event_time(event)
    session = (
        ListenSession.objects.select_for_update(of=("self",))
        .select_related("conversation")
        .filter(listener_identity=identity)
        .first()
    )
    if session is None:
        return "unknown_listener"
    if session.conversation_id != conversation_id:
        # Minted for another call in this room: one that lost the room to its owner, or
        # an earlier call under a reused name. Out it goes, from the room it is in.
        if event.event == "participant_joined":
            removals.append((event.room.name, identity))
            return "listener_foreign"
        return "unchanged"
    if event.event == "participant_joined":
        if session.revoked_at is not None:
            # Revoked while its token was still unredeemed: take it out again (after commit).
            removals.append((event.room.name, identity))
            return "listener_revoked"
        return "listener_joined" if sessions.join(session, at) else "unchanged"
    return "listener_left" if sessions.leave(session, at) else "unchanged"
