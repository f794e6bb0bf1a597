"""Reconciliation with LiveKit: a live call whose room is gone ends (``room_gone``).

LiveKit tells the app that a room closed with its ``room_finished`` webhook. When it
cannot (the server restarted or crashed with the room in memory, the webhook was lost),
the call would stay ``in_progress`` for good. ``reconcile``, run by ``manage.py
sweep_listeners``, asks LiveKit which rooms of the live calls are open and ends the calls
whose room stayed gone. Its rules: docs/internals/calls.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone
from livekit import api

from anyreach_listen import conversations
from anyreach_listen.conf import listen_settings
from anyreach_listen.livekit.room_ownership import owner_named
from anyreach_listen.livekit.service import livekit_api, run_sync
from anyreach_listen.models import Conversation, ConversationStatus

logger = logging.getLogger(__name__)

ROOM_GONE = "room_gone"  # the conversation's metadata["ended_by"] and the event's name


@dataclass(frozen=True)
class Reconciled:
    checked: bool  # LiveKit answered (False: nothing was changed)
    missing: int = 0  # in-progress calls whose room LiveKit does not have (closed included)
    closed: int = 0  # of those, ended now as failed (room_gone)
    lost: int = 0  # calls whose open room's metadata names another organization


async def open_rooms(names: list[str]) -> dict[str, api.Room]:
    """The rooms of ``names`` LiveKit has open, by name: one ListRooms call."""
    async with livekit_api() as client:
        response = await client.room.list_rooms(api.ListRoomsRequest(names=names))
    return {room.name: room for room in response.rooms}


def reconcile(*, now: dt.datetime | None = None) -> Reconciled:
    """End the in-progress calls whose LiveKit room has been gone for more than the grace."""
    now = now or timezone.now()
    if listen_settings.REMOTE_MINT:
        # The calls here mirror a remote platform's, whose rooms this LiveKit need not hold.
        return Reconciled(checked=False)
    live = Conversation.objects.active().exclude(livekit_room=None)
    rows = live.values_list("pk", "livekit_room", "organization_id", "status")
    calls = {pk: (room, str(org), status) for pk, room, org, status in rows if room}
    if not calls:
        return Reconciled(checked=True)
    try:
        present = run_sync(open_rooms(sorted({room for room, _, _ in calls.values()})))
    except Exception as exc:
        logger.warning(
            "LiveKit did not list its rooms (%s: %s): no call is closed this time",
            type(exc).__name__,
            exc,
        )
        return Reconciled(checked=False)
    lost: set[uuid.UUID] = set()
    for pk, (room, organization_id, _) in calls.items():
        owner = owner_named(present[room].metadata) if room in present else None
        if owner is not None and str(owner) != organization_id:
            logger.warning("Room %s belongs to another organization: its call loses it", room)
            conversations.lose_room(Conversation(pk=pk), at=now)
            lost.add(pk)
    in_progress = {
        pk: room
        for pk, (room, _, status) in calls.items()
        if status == ConversationStatus.IN_PROGRESS and pk not in lost
    }
    missing = [pk for pk, room in in_progress.items() if room not in present]
    there = [pk for pk, room in in_progress.items() if room in present]
    # update(), not save(): no event, and updated_at stays the call's last real change.
    Conversation.objects.filter(pk__in=there, room_missing_since__isnull=False).update(
        room_missing_since=None
    )
    Conversation.objects.filter(pk__in=missing, room_missing_since__isnull=True).update(
        room_missing_since=now
    )
    cutoff = now - dt.timedelta(seconds=listen_settings.ROOM_GONE_GRACE)
    due = Conversation.objects.filter(
        pk__in=missing, room_missing_since__lte=cutoff, updated_at__lte=cutoff
    ).values_list("pk", flat=True)
    closed = sum(_close_if_gone(pk, in_progress[pk], cutoff) for pk in due)
    return Reconciled(checked=True, missing=len(missing), closed=closed, lost=len(lost))


def _close_if_gone(pk: uuid.UUID, room: str, cutoff: dt.datetime) -> bool:
    with transaction.atomic():
        # Checked again on the locked row: another door may have ended or changed it.
        row = (
            Conversation.objects.select_for_update(of=("self",))
            .filter(
                pk=pk,
                status=ConversationStatus.IN_PROGRESS,
                livekit_room=room,
                room_missing_since__lte=cutoff,
                updated_at__lte=cutoff,
            )
            .first()
        )
        if row is None or row.room_missing_since is None:
            return False
        logger.warning(
            "Room %s of conversation %s has been gone from LiveKit since %s: the call "
            "ends as failed (room_gone)",
            room,
            pk,
            row.room_missing_since.isoformat(),
        )
        # It ended when its room was first seen gone, not when the grace ran out.
        at = row.room_missing_since
        return conversations.finish(row, status=ConversationStatus.FAILED, at=at, by=ROOM_GONE)
