"""``POST /livekit/recorder``: the transcript recorders deliver their updates here.

The recorder (``manage.py run_recorder``) is a process of its own, often on another
machine, with no database: it posts what it heard here, signed like a LiveKit webhook,
and the portal records it with ``transcripts.record``. So the live events and interim
text happen in the portal's process and reach its websockets whatever the channel layer
and cache are. Wire format and answers: docs/operations/recorder.md, docs/internals/recorder.md.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse

from anyreach_listen import transcripts
from anyreach_listen.access import ratelimit
from anyreach_listen.access.client_address import client_address
from anyreach_listen.api import payloads
from anyreach_listen.api.body_limit import MAX_BODY, read_limited
from anyreach_listen.api.errors import ApiError, Errors, endpoint
from anyreach_listen.conf import listen_settings
from anyreach_listen.models import Conversation
from anyreach_listen.recorder import dispatch as recorder_dispatch
from anyreach_listen.recorder.wire import (
    DELIVERY_FIELDS,
    MAX_ROOM_NAME,
    REGISTERED,
    DeliveryResult,
    refusal,
)

logger = logging.getLogger(__name__)

BODY_FIELDS = DELIVERY_FIELDS


def _refused(request: HttpRequest, why: str) -> ApiError:
    # Never log the Authorization header: it is a signed token.
    logger.warning("Rejected recorder delivery from %s: %s", client_address(request) or "?", why)
    refused = ApiError(
        Errors.INVALID_SIGNATURE, "The recorder delivery's signature or body hash is not valid."
    )
    # 401, or 429 once the address sent too many bad signatures (``ratelimit.py``).
    return ratelimit.signature_refusal(request, refused)


def _verify(request: HttpRequest, body: bytes) -> None:
    why = refusal(
        request.headers.get("Authorization", ""),
        body,
        listen_settings.LIVEKIT_API_KEY,
        listen_settings.LIVEKIT_API_SECRET,
    )
    if why is not None:
        raise _refused(request, why)


def _room(data: dict[str, Any]) -> str:
    room = data.get("room")
    if not isinstance(room, str) or not 1 <= len(room) <= MAX_ROOM_NAME:
        raise ApiError(
            Errors.INVALID_FIELD, f"room must be a string of 1 to {MAX_ROOM_NAME} characters."
        )
    return room


def _conversation_id(data: dict[str, Any]) -> uuid.UUID | None:
    value = data.get("conversation_id")
    if value is None:
        return None
    try:
        return uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        pass
    raise ApiError(Errors.INVALID_FIELD, "conversation_id must be a UUID.")


def resolve(room: str, conversation_id: uuid.UUID | None) -> Conversation:
    """The dispatch's conversation if it is the room's (a room name can be reused),
    else the room's active one."""
    rooms = Conversation.objects.in_room(room)
    found = (
        rooms.filter(pk=conversation_id).first()
        if conversation_id is not None
        else rooms.active().first()
    )
    if found is None:
        raise ApiError(Errors.CONVERSATION_NOT_FOUND)
    return found


@endpoint("POST")
def recorder_delivery(request: HttpRequest) -> JsonResponse:
    # Read by ``endpoint`` already, at most MAX_BODY bytes (chunked or not): a larger
    # body was refused before it could be hashed.
    body = read_limited(request, MAX_BODY)
    # Before parsing (nothing unsigned is read) and before any throttle: a correctly
    # signed delivery is never refused for its address's bad ones.
    _verify(request, body)
    data = payloads.read_object(request)
    if REGISTERED in data:
        return _registered(data)
    unknown = sorted(set(data) - BODY_FIELDS)
    if unknown:
        raise ApiError(Errors.UNKNOWN_FIELD, f"Unknown field(s): {', '.join(unknown)}.")
    room, wanted = _room(data), _conversation_id(data)
    updates = payloads.transcript_updates({"segments": data.get("segments")})
    try:
        conversation = resolve(room, wanted)
        result = transcripts.record(conversation, updates)
    except DatabaseError as exc:
        # Nothing was stored (one transaction): a 5xx makes the recorder retry.
        logger.warning("Recorder delivery for room %s not stored: %s", room, type(exc).__name__)
        raise ApiError(Errors.INTERNAL_ERROR) from None
    answer = DeliveryResult(recorded=result.recorded, unchanged=result.unchanged)
    return JsonResponse(answer.model_dump())


def _registered(data: dict[str, Any]) -> JsonResponse:
    """``{"registered": <worker id>}``: a recorder worker registered with LiveKit. The
    calls that lack recorders (opened while no worker was up) get them now, not at the
    next sweep; on the dispatch thread, so the worker does not wait for LiveKit."""
    if set(data) != {REGISTERED} or not isinstance(data[REGISTERED], str):
        raise ApiError(Errors.INVALID_FIELD, "registered must be the only field, a string.")
    recorder_dispatch.sweep_in_background()
    return JsonResponse({"sweep": "queued"}, status=202)
