"""Conversations from LiveKit rooms alone, with no integration code on the platform's side.

A platform that only points LiveKit's webhook at us gets its calls monitored: this module
decides whether a room that has no conversation yet gets one, and for which organization,
from the room's ``anyreach`` metadata or the ``AUTO_REGISTER`` setting. Its rules:
docs/internals/calls.md.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from livekit.api import Room

from anyreach_listen import conversations
from anyreach_listen.access.policy import parse_uuid
from anyreach_listen.api import payloads
from anyreach_listen.api.errors import ApiError
from anyreach_listen.conf import listen_settings
from anyreach_listen.livekit.room_ownership import METADATA_KEY
from anyreach_listen.models import Conversation, Organization

logger = logging.getLogger(__name__)

SPEC_FIELDS: dict[str, payloads.Field] = {
    "organization_id": payloads.ID,
    "team_id": payloads.ID,
    "agent_label": payloads.LABEL,
    "caller_label": payloads.LABEL,
    "external_id": payloads.ID,
    "metadata": payloads.METADATA,
}


def registration_spec(room: Room) -> dict[str, Any] | None:
    """What the room says about its conversation, or what ``AUTO_REGISTER`` maps it to."""
    try:
        metadata = json.loads(room.metadata) if room.metadata else None
    except ValueError:
        metadata = None
    spec = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    if isinstance(spec, dict):
        return spec
    rule = listen_settings.AUTO_REGISTER
    if rule and room.name.startswith(rule["ROOM_PREFIX"]):
        return {"organization_id": rule["ORGANIZATION"], "team_id": rule.get("TEAM")}
    return None


def register_room(room: Room, *, at: dt.datetime) -> Conversation | None:
    """Register the conversation of ``room`` if it says whose it is; None otherwise."""
    spec = registration_spec(room)
    if spec is None:
        return None
    try:
        fields = payloads.clean(spec, SPEC_FIELDS)
        org_id = parse_uuid(fields.pop("organization_id", None))
        organization = Organization.objects.filter(pk=org_id).first() if org_id else None
        if organization is None:
            raise ValueError("unknown organization")
        team_id = fields.pop("team_id", None)
        team = None
        if team_id is not None:
            team_uuid = parse_uuid(team_id)
            teams = organization.teams.all()
            team = teams.filter(pk=team_uuid).first() if team_uuid else None
            if team is None:
                raise ValueError("team_id is not a team of that organization")
        conversation, _ = conversations.register(
            organization,
            room_name=room.name,
            team=team,
            started_at=at,
            by="room_registered",
            platform_assigned=True,
            **{name: value for name, value in fields.items() if value is not None},
        )
    except (ApiError, ValueError) as exc:
        if isinstance(exc, ApiError) and exc.code == "room_in_use":
            # Another delivery registered it first.
            return Conversation.objects.active().filter(livekit_room=room.name).first()
        logger.warning("Room %s not registered: %s", room.name, exc)
        return None
    return conversation
