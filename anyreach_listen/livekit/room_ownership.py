"""Who owns a LiveKit room: the organization its metadata names, never a tenant's claim.

The platform writes a room's metadata with the LiveKit secret, which tenants never hold,
so ``{"anyreach": {"organization_id": …}}`` there decides. This module reads that owner
and checks a tenant's registration of a room against it (``check_claim``). What counts
as a claim and how a conversation holds a room: docs/internals/calls.md.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid

from django.db.models import Q
from django.utils import timezone
from livekit import api

from anyreach_listen.api.errors import ApiError, Errors
from anyreach_listen.livekit.service import livekit_api, run_sync
from anyreach_listen.models import ACTIVE_STATUSES, Conversation, Organization

logger = logging.getLogger(__name__)

METADATA_KEY = "anyreach"
# A room name another organization used this recently cannot be claimed: its
# platform may still be running the room, or start it again.
REUSE_AFTER = dt.timedelta(hours=24)


def owner_named(metadata: str) -> uuid.UUID | None:
    """The organization id a room's metadata names, or None (no or malformed claim)."""
    try:
        data = json.loads(metadata) if metadata else None
    except ValueError:
        return None
    spec = data.get(METADATA_KEY) if isinstance(data, dict) else None
    value = spec.get("organization_id") if isinstance(spec, dict) else None
    try:
        return uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


async def _livekit_owner(room_name: str) -> uuid.UUID | None:
    async with livekit_api() as client:
        rooms = await client.room.list_rooms(api.ListRoomsRequest(names=[room_name]))
    return next((owner_named(room.metadata) for room in rooms.rooms), None)


def livekit_owner(room_name: str) -> uuid.UUID | None:
    """The owner LiveKit's metadata names for an open room; None when it names none, the
    room is not open, or LiveKit cannot be asked (the webhooks still take the room
    back when it opens, so an outage does not block registrations)."""
    try:
        return run_sync(_livekit_owner(room_name))
    except Exception as exc:
        logger.warning("Could not ask LiveKit who owns room %s: %s", room_name, exc)
        return None


def check_claim(organization: Organization, room_name: str) -> list[Conversation]:
    """Refuse ``organization`` claiming ``room_name`` unless it may (``ApiError``).

    ``room_not_owned``: outside the organization's ``room_prefix``, or LiveKit's
    metadata names another organization. ``room_in_use``: another organization's
    conversation holds the room or ended in it less than ``REUSE_AFTER`` ago. When
    LiveKit's metadata names ``organization`` itself, the platform's word wins: the
    other organizations' conversations holding the room are returned, to be taken
    from them (``conversations.lose_room``).
    """
    prefix = organization.room_prefix
    if prefix and not room_name.startswith(prefix):
        raise ApiError(
            Errors.ROOM_NOT_OWNED, f"This organization's room names start with {prefix!r}."
        )
    owner = livekit_owner(room_name)
    if owner is not None and owner != organization.pk:
        raise ApiError(Errors.ROOM_NOT_OWNED)
    others = Conversation.objects.in_room(room_name).exclude(organization=organization)
    if owner == organization.pk:
        return list(others)
    recent = Q(status__in=ACTIVE_STATUSES) | Q(ended_at__gte=timezone.now() - REUSE_AFTER)
    if others.filter(recent).exists():
        raise ApiError(Errors.ROOM_IN_USE)
    return []
