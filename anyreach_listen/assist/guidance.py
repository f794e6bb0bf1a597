"""Guidance to a call's AI agent: audited, committed, then signed and sent over LiveKit.

``give`` checks the call is live with an agent in its room, writes the audit row (pending)
and commits it before anything is sent, relays the signed order (``signing``) through
RoomService.PerformRpc and records the outcome (delivered, or failed with the reason);
every change is published as ``guidance.updated`` once it commits. Rows change here only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import httpx
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from livekit import api

from anyreach_listen import disclosure
from anyreach_listen.api.errors import ApiError, Errors
from anyreach_listen.assist import signing
from anyreach_listen.conf import listen_settings
from anyreach_listen.events import publish_guidance
from anyreach_listen.listening.minting import LISTENER_IDENTITY_PREFIX
from anyreach_listen.livekit import service
from anyreach_listen.models import Conversation, Guidance, GuidanceMode, GuidanceStatus
from anyreach_listen.recorder.dispatch import is_recorder
from anyreach_listen.recorder.wire import storable

logger = logging.getLogger(__name__)

ACK_TIMEOUT_MS = 5000  # how long the agent has to acknowledge
LIST_TIMEOUT = 2.0  # seconds LiveKit has to say who is in the room
REASON_MAX = 500
# What "LiveKit could not be asked" is: unreachable, too slow, or answering an error.
# Anything else is a bug, and stays one (500).
LIVEKIT_FAILURES: tuple[type[BaseException], ...] = (
    api.TwirpError,
    aiohttp.ClientError,
    httpx.HTTPError,
    asyncio.TimeoutError,
    TimeoutError,
    OSError,
)


def check_text(value: Any) -> str:
    """Guidance text as given, if it is 1 to ``MAX_TEXT`` characters with something
    besides spaces in it (and no NUL); ``ValueError`` otherwise."""
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= signing.MAX_TEXT
        or not value.strip()
        or not storable(value)
    ):
        raise ValueError
    return value


def _valid(mode: str, text: str) -> None:
    if mode not in GuidanceMode.values:
        raise ApiError(Errors.INVALID_FIELD, "mode must be one of whisper, say.")
    try:
        check_text(text)
    except ValueError:
        raise ApiError(
            Errors.INVALID_FIELD, f"text must be 1 to {signing.MAX_TEXT} characters, not blank."
        ) from None


def _is_agent(participant: api.ParticipantInfo) -> bool:
    # LiveKit's mark, from the token it minted (as the recorder dispatch reads it). Not
    # ours: recorders are agents too, and a listener or anyone hidden takes no guidance.
    return (
        participant.kind == api.ParticipantInfo.Kind.AGENT
        and not participant.permission.hidden
        and not participant.identity.startswith(LISTENER_IDENTITY_PREFIX)
        and not is_recorder(participant)
    )


def find_agent(room: str) -> str | None:
    """The identity of the AI agent in ``room`` (the first to join), None without one;
    raises one of ``LIVEKIT_FAILURES`` when LiveKit cannot be asked."""
    people = service.run_sync(service.participants(room, timeout=LIST_TIMEOUT))
    agents = [p for p in people if _is_agent(p)]
    agents.sort(key=lambda p: p.joined_at)
    return agents[0].identity if agents else None


def _record(conversation: Conversation, fields: Mapping[str, Any], **state: Any) -> Guidance:
    """The audit row, committed: durable, so it is never a savepoint of an open
    transaction that could still roll back after the order went out."""
    with transaction.atomic(durable=True):
        row = Guidance.objects.create(conversation=conversation, **fields, **state)
        publish_guidance(row)
    return row


def _settle(row: Guidance, reason: str | None, latency_ms: int | None) -> None:
    """The outcome: delivered (``reason`` None) or failed with ``reason``, committed."""
    if reason is None:
        row.status, row.delivered_at, row.latency_ms = (
            GuidanceStatus.DELIVERED,
            timezone.now(),
            latency_ms,
        )
    else:
        row.status, row.reason = GuidanceStatus.FAILED, reason[:REASON_MAX]
    with transaction.atomic(durable=True):
        row.save(update_fields=["status", "delivered_at", "latency_ms", "reason"])
        publish_guidance(row)


def _not_delivered(row: Guidance) -> ApiError:
    return ApiError(Errors.GUIDANCE_NOT_DELIVERED, f"The agent did not take it: {row.reason}.")


def _send(row: Guidance, room: str) -> tuple[str | None, int | None]:
    """Sign and relay the order; (None, latency) when the agent applied it, else (why, None)."""
    order = signing.GuidanceOrder(id=str(row.pk), mode=row.mode, text=row.text)  # type: ignore[arg-type]
    payload = signing.sign(
        order,
        room=room,
        api_key=listen_settings.LIVEKIT_API_KEY,
        api_secret=listen_settings.LIVEKIT_API_SECRET,
        identity=row.agent_identity,
    )
    started = time.monotonic()
    try:
        answer = service.perform_rpc(
            room, row.agent_identity, signing.GUIDANCE_METHOD, payload, timeout_ms=ACK_TIMEOUT_MS
        )
    except service.RpcFailed as exc:
        return str(exc), None
    except Exception:
        # The row must not stay pending: it fails, and the error goes to the log.
        logger.exception("Could not send guidance %s to %s", row.pk, room)
        return "unexpected error while sending", None
    latency = round((time.monotonic() - started) * 1000)
    reason = signing.read_acknowledgement(answer, str(row.pk))
    return reason, (latency if reason is None else None)


def give(
    conversation: Conversation,
    *,
    mode: str,
    text: str,
    audit: Mapping[str, Any],
    request: HttpRequest | None = None,
) -> Guidance:
    """Guide the call's agent (``audit``: a policy's ``audit_fields``); the delivered row.

    ``ApiError``: ``invalid_field``, ``conversation_not_active``, ``agent_not_present``
    (also when LiveKit cannot be asked; nothing recorded), ``guidance_not_delivered`` (the
    row stays, failed, with the reason).
    Must run outside any transaction: the row commits (a durable block) before the order
    is sent, and Django raises ``RuntimeError`` inside one, before anything is sent; a
    project with ATOMIC_REQUESTS marks its view ``@transaction.non_atomic_requests``.
    """
    _valid(mode, text)
    if not conversation.is_active:
        raise ApiError(Errors.CONVERSATION_NOT_ACTIVE, "Only a live call's agent can be guided.")
    room = conversation.livekit_room
    if not room:
        raise ApiError(Errors.AGENT_NOT_PRESENT, "The call has no LiveKit room yet.")
    who = disclosure.who_columns(audit, client_ip=disclosure.request_ip(request))
    fields = {"mode": mode, "text": text, **who}
    try:
        agent = find_agent(room)
    except LIVEKIT_FAILURES as exc:
        # Nothing was sent, so nothing is recorded: like a room without an agent.
        logger.warning("Could not list the participants of %s", room, exc_info=True)
        raise ApiError(
            Errors.AGENT_NOT_PRESENT,
            f"LiveKit could not be asked whether the call has an agent ({type(exc).__name__}); "
            "try again.",
        ) from None
    if agent is None:
        raise ApiError(Errors.AGENT_NOT_PRESENT)
    row = _record(conversation, fields, agent_identity=agent)
    outcome, latency_ms = _send(row, room)
    _settle(row, outcome, latency_ms)
    if outcome is not None:
        raise _not_delivered(row)
    return row


def for_call(conversation: Conversation) -> list[Guidance]:
    """The call's guidance, oldest first (who loaded for the author's name)."""
    rows = Guidance.objects.filter(conversation=conversation).select_related("user")
    return list(rows.order_by("created_at", "id"))
