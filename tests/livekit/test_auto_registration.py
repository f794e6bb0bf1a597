"""LiveKit auto-registration: rooms that say whose they are become conversations."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from django.test import Client
from livekit import api

from anyreach_listen.models import Conversation, ConversationStatus, Team
from tests.support.livekit import deliver_webhook as post
from tests.support.livekit import webhook_event
from tests.support.world import TEST_LISTEN_SETTINGS, World


def metadata(world: World, **spec: Any) -> str:
    return json.dumps({"anyreach": {"organization_id": str(world.org.pk), **spec}})


def test_room_started_with_anyreach_metadata_registers_the_call(
    client: Client, world: World
) -> None:
    started = int(time.time()) - 5
    room_metadata = metadata(
        world,
        team_id=str(world.team.pk),
        agent_label="Ava",
        caller_label="+1 555 0199",
        external_id="platform-1",
        metadata={"campaign": "spring"},
    )
    body = webhook_event(
        "room_started", "call-new", created_at=started, room_metadata=room_metadata
    )
    assert post(client, body).json()["outcome"] == "registered"
    call = Conversation.objects.get(livekit_room="call-new")
    assert (call.organization, call.team, call.status) == (
        world.org,
        world.team,
        ConversationStatus.IN_PROGRESS,
    )
    assert (call.agent_label, call.caller_label, call.external_id) == (
        "Ava",
        "+1 555 0199",
        "platform-1",
    )
    assert call.metadata["campaign"] == "spring"
    assert call.started_at is not None and int(call.started_at.timestamp()) == started

    # The call ends with its room, as any other.
    assert post(client, webhook_event("room_finished", "call-new")).json()["outcome"] == (
        "room_finished"
    )
    call.refresh_from_db()
    assert call.status == ConversationStatus.COMPLETED


def test_duplicated_and_reordered_deliveries_register_once(client: Client, world: World) -> None:
    room_metadata = metadata(world)
    joined = webhook_event(
        "participant_joined",
        "call-dup",
        identity="agent-1",
        kind=api.ParticipantInfo.Kind.AGENT,
        room_metadata=room_metadata,
    )
    post(client, joined)  # the participant's event arrived first
    for _ in range(2):  # then room_started, twice (distinct event ids)
        post(client, webhook_event("room_started", "call-dup", room_metadata=room_metadata))
    assert Conversation.objects.filter(livekit_room="call-dup").count() == 1


@pytest.mark.parametrize(
    "room_metadata",
    [
        "",
        "not json",
        json.dumps({"other": {}}),
        json.dumps({"anyreach": {"organization_id": "00000000-0000-0000-0000-000000000000"}}),
        json.dumps({"anyreach": {"organization_id": "garbage"}}),
        json.dumps({"anyreach": {"agent_label": "no organization"}}),
    ],
)
def test_rooms_that_do_not_say_whose_they_are_are_ignored(
    client: Client, world: World, room_metadata: str
) -> None:
    body = webhook_event("room_started", "call-unknown", room_metadata=room_metadata)
    assert post(client, body).json()["outcome"] == "ignored"
    assert not Conversation.objects.filter(livekit_room="call-unknown").exists()


def test_a_foreign_team_is_logged_and_ignored(
    client: Client, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    foreign = Team.objects.create(organization=world.other_org, name="Ops")
    body = webhook_event(
        "room_started", "call-foreign", room_metadata=metadata(world, team_id=str(foreign.pk))
    )
    with caplog.at_level(logging.WARNING, logger="anyreach_listen.livekit.auto_registration"):
        assert post(client, body).json()["outcome"] == "ignored"
    assert "call-foreign" in caplog.text and "team" in caplog.text
    assert not Conversation.objects.filter(livekit_room="call-foreign").exists()


def test_auto_register_setting_maps_a_name_prefix(
    client: Client, world: World, settings: Any
) -> None:
    settings.ANYREACH_LISTEN = {
        **TEST_LISTEN_SETTINGS,
        "AUTO_REGISTER": {
            "ROOM_PREFIX": "sip-",
            "ORGANIZATION": str(world.org.pk),
            "TEAM": str(world.team.pk),
        },
    }
    assert post(client, webhook_event("room_started", "sip-42")).json()["outcome"] == "registered"
    assert Conversation.objects.get(livekit_room="sip-42").team == world.team
    assert post(client, webhook_event("room_started", "pstn-42")).json()["outcome"] == "ignored"
