"""Conversations: the one writer of a conversation's state, whichever door a change uses.

The REST API (``api/views.py``), LiveKit webhooks (``livekit/webhooks.py``), the admin, the demo and
host projects call these functions, so the same rules apply at every door. Each change
is made under a row lock and publishes one channel-layer event after it commits. Room
claims and lost rooms: docs/internals/calls.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from anyreach_listen.api.errors import ApiError, Errors
from anyreach_listen.api.shapes import utc_iso
from anyreach_listen.assist import takeover
from anyreach_listen.events import publish_conversation
from anyreach_listen.listening import sessions
from anyreach_listen.listening.revocation import revoke_sessions
from anyreach_listen.livekit import room_ownership
from anyreach_listen.models import (
    TERMINAL_STATUSES,
    Conversation,
    ConversationStatus,
    Organization,
    Team,
)
from anyreach_listen.recorder import dispatch as recorder_dispatch

# Fields ``update`` changes directly; status and room have rules of their own.
PLAIN_FIELDS = ("agent_label", "caller_label", "metadata")


def _check_team(organization_id: Any, team: Team | None) -> None:
    if team is not None and team.organization_id != organization_id:
        raise ApiError(Errors.INVALID_TEAM)


def register(
    organization: Organization,
    *,
    room_name: str | None = None,
    status: str = ConversationStatus.IN_PROGRESS,
    team: Team | None = None,
    agent_label: str = "",
    caller_label: str = "",
    metadata: Mapping[str, Any] | None = None,
    external_id: str | None = None,
    started_at: dt.datetime | None = None,
    by: str = "registered",
    platform_assigned: bool = False,
) -> tuple[Conversation, bool]:
    """A new active conversation, or the existing one with this ``external_id``.

    ``platform_assigned``: the room's LiveKit metadata gave it to ``organization``;
    otherwise the room is a claim (``room_ownership.check_claim``). Returns
    ``(conversation, created)``. ``ApiError``: ``invalid_team``, ``room_in_use``,
    ``room_not_owned``, ``invalid_field`` (a status that is not active).
    """
    if status not in ConversationStatus.values or status in TERMINAL_STATUSES:
        raise ApiError(Errors.INVALID_FIELD, "status must be triggered, ringing or in_progress.")
    _check_team(organization.pk, team)
    existing = _registered(organization, external_id)
    if existing is not None:
        return existing, False
    if room_name and not platform_assigned:
        _take_from_squatters(room_ownership.check_claim(organization, room_name))
    answered = status == ConversationStatus.IN_PROGRESS
    conversation = Conversation(
        organization=organization,
        team=team,
        status=status,
        livekit_room=room_name or None,
        agent_label=agent_label,
        caller_label=caller_label,
        metadata=dict(metadata or {}),
        external_id=external_id,
        started_at=(started_at or timezone.now()) if answered else None,
    )
    try:
        with transaction.atomic():
            conversation.save(force_insert=True)
            publish_conversation(conversation, by)
            recorder_dispatch.dispatch_on_commit(conversation)
    except IntegrityError:
        # Lost a race: the same external_id (a retry) or the same room (a duplicate
        # webhook) was registered by another request in the meantime.
        existing = _registered(organization, external_id)
        if existing is None:
            raise ApiError(Errors.ROOM_IN_USE) from None
        return existing, False
    return conversation, True


def _registered(organization: Organization, external_id: str | None) -> Conversation | None:
    if external_id is None:
        return None
    return Conversation.objects.filter(organization=organization, external_id=external_id).first()


def _locked(conversation: Conversation) -> Conversation:
    # of=("self",): PostgreSQL cannot lock the nullable side of the team's outer join.
    return (
        Conversation.objects.select_for_update(of=("self",))
        .select_related("organization", "team")
        .get(pk=conversation.pk)
    )


def update(
    conversation: Conversation,
    *,
    status: str | None = None,
    room_name: str | None = None,
    team: Team | None = None,
    set_team: bool = False,
    at: dt.datetime | None = None,
    by: str = "updated",
    **fields: Any,
) -> Conversation:
    """Apply a change; the fresh row. ``set_team`` distinguishes "no team" from "unchanged".

    ``ApiError``: ``invalid_transition`` (backwards, or a second room name),
    ``invalid_team``, ``room_in_use``, ``room_not_owned``.
    """
    unknown = set(fields) - set(PLAIN_FIELDS)
    if unknown:
        raise TypeError(f"not a conversation field: {', '.join(sorted(unknown))}")
    if room_name and not conversation.livekit_room and conversation.is_active:
        # Outside the transaction: the check may ask LiveKit.
        _take_from_squatters(room_ownership.check_claim(conversation.organization, room_name))
    with transaction.atomic():
        return _update_locked(
            _locked(conversation),
            status=status,
            room_name=room_name,
            team=team,
            set_team=set_team,
            at=at or timezone.now(),
            by=by,
            fields=fields,
        )


def _update_locked(
    row: Conversation,
    *,
    status: str | None,
    room_name: str | None,
    team: Team | None,
    set_team: bool,
    at: dt.datetime,
    by: str,
    fields: dict[str, Any],
) -> Conversation:
    if status is not None and not row.may_move_to(status):
        raise ApiError(
            Errors.INVALID_TRANSITION,
            f"The conversation is {row.status}; it cannot move to {status}.",
        )
    if room_name is not None and room_name != row.livekit_room and not row.is_active:
        # Checked on the locked row: the claim above was skipped for an ended call (one
        # that lost its room to its owner included), which takes no room.
        raise ApiError(Errors.INVALID_TRANSITION, "An ended conversation takes no room.")
    changed = [name for name, value in fields.items() if getattr(row, name) != value]
    for name in changed:
        setattr(row, name, fields[name])
    if room_name is not None and room_name != row.livekit_room:
        if row.livekit_room:
            raise ApiError(
                Errors.INVALID_TRANSITION, "The conversation has a room already; it is set once."
            )
        row.livekit_room = room_name
        changed.append("livekit_room")
    if set_team and team != row.team:
        _check_team(row.organization_id, team)
        row.team = team
        changed.append("team")
    if status is not None and status in TERMINAL_STATUSES:
        if changed:
            _save(row, changed)
        _finish_locked(row, at=at, by=by, status=status, room_closed=False)
        return row
    if status is not None and status != row.status:
        row.status = status
        changed.append("status")
        if status == ConversationStatus.IN_PROGRESS and row.started_at is None:
            row.started_at = at
            changed.append("started_at")
    if changed:
        _save(row, changed)
        publish_conversation(row, by)
        if "livekit_room" in changed:
            recorder_dispatch.dispatch_on_commit(row)
    return row


def _save(row: Conversation, changed: list[str]) -> None:
    try:
        with transaction.atomic():
            row.save(update_fields=[*changed, "updated_at"])
    except IntegrityError:
        raise ApiError(Errors.ROOM_IN_USE) from None


@transaction.atomic
def finish(
    conversation: Conversation,
    *,
    status: str = ConversationStatus.COMPLETED,
    at: dt.datetime | None = None,
    by: str = "finished",
    room_closed: bool = False,
) -> bool:
    """End the call (idempotent: False when it had ended already).

    ``room_closed``: the LiveKit room is gone (``room_finished``), so its
    listeners left with it; otherwise they are revoked and removed from the room.
    """
    row = _locked(conversation)
    return _finish_locked(
        row, at=at or timezone.now(), by=by, status=status, room_closed=room_closed
    )


def _finish_locked(
    row: Conversation, *, at: dt.datetime, by: str, status: str, room_closed: bool
) -> bool:
    finished = row.finish(at, by=by, status=status)
    if finished:
        publish_conversation(row, by)  # ``by`` names the event (e.g. ``room_finished``)
    if room_closed:
        sessions.close_room(row, at)
    elif finished:
        revoke_sessions(row.listen_sessions.filter(revoked_at__isnull=True))
    if finished:
        # The supervisor speaking in it leaves too (after the commit); nobody to resume.
        takeover.end_for_call(row, room_closed=room_closed)
    return finished


def _take_from_squatters(squatters: list[Conversation]) -> None:
    for squatter in squatters:
        lose_room(squatter, at=timezone.now())


@transaction.atomic
def lose_room(conversation: Conversation, *, at: dt.datetime) -> bool:
    """The platform gave the conversation's room to another organization: the call ends
    as ``failed`` (if still active), its listeners are revoked and removed, and it no
    longer holds the room (``metadata["lost_room"]`` keeps its name), so nothing heard
    there is ever stored under it again. False when it held no room."""
    row = _locked(conversation)
    room = row.livekit_room
    if not room:
        return False
    # While the row still names the room: the removals need it.
    revoke_sessions(row.listen_sessions.filter(revoked_at__isnull=True))
    takeover.end_for_call(row)
    row.livekit_room = None
    row.metadata = {**row.metadata, "lost_room": room}
    row.save(update_fields=["livekit_room", "metadata", "updated_at"])
    # Ended now or before: either way, one event says the call lost its room.
    row.finish(at, by="room_not_owned", status=ConversationStatus.FAILED)
    publish_conversation(row, "room_not_owned")
    return True


@transaction.atomic
def room_started(conversation: Conversation, *, at: dt.datetime, room_sid: str = "") -> bool:
    """LiveKit opened the call's room: the call is in progress. False when nothing changed."""
    row = _locked(conversation)
    changed: list[str] = []
    if row.status in (ConversationStatus.TRIGGERED, ConversationStatus.RINGING):
        row.status = ConversationStatus.IN_PROGRESS
        changed.append("status")
    if row.started_at is None and row.is_active:
        row.started_at = at
        changed.append("started_at")
    if room_sid and row.metadata.get("livekit_room_sid") != room_sid:
        row.metadata = {**row.metadata, "livekit_room_sid": room_sid}
        changed.append("metadata")
    if not changed:
        return False
    row.save(update_fields=[*changed, "updated_at"])
    publish_conversation(row, "room_started")
    return True


@transaction.atomic
def agent_presence(
    conversation: Conversation, *, identity: str, joined: bool, at: dt.datetime
) -> str:
    """The AI agent joined or left the room (the status is kept).

    Returns the event name, or ``"unchanged"`` for a copy of a change already
    recorded or older than it (a webhook retry or duplicate): idempotent.
    LiveKit stamps events to the second, so a leave and a rejoin within one
    second share a time: ``present`` tells a rejoin from a copy.
    """
    row = _locked(conversation)
    event = "agent_joined" if joined else "agent_left"
    field = "joined_at" if joined else "left_at"
    agent = dict(row.metadata.get("agent") or {})
    recorded = _parse_time(agent.get(field)) if agent.get("identity") == identity else None
    if recorded is not None and (
        at < recorded or (at == recorded and agent.get("present") == joined)
    ):
        return "unchanged"
    agent["identity"] = identity
    agent["present"] = joined
    agent[field] = utc_iso(at)
    row.metadata = {**row.metadata, "agent": agent}
    row.save(update_fields=["metadata", "updated_at"])
    publish_conversation(row, event)
    return event


def _parse_time(value: object) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
