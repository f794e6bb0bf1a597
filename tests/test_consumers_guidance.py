"""consumers.py, guidance and presence events: ``guidance.updated`` reaches only those who may
read the call's transcript (viewers never see guidance text), audited as a glance at the call;
``listener.updated`` names the listener.

The real path: ``guidance.give`` commits, ``events.publish_guidance`` sends on commit through
the in-memory channel layer, the consumer filters per socket (LiveKit faked).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from livekit import api

from anyreach_listen.assist import guidance
from anyreach_listen.listening import sessions
from anyreach_listen.models import Conversation, TranscriptRead
from tests.assist.test_guidance import FakeLiveKit, person
from tests.support.sockets import connect, everything
from tests.support.world import World

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TEXT = "Offer the loyalty discount."


@pytest.fixture(autouse=True)
def _in_memory_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture(autouse=True)
def _agent_room(monkeypatch: pytest.MonkeyPatch) -> FakeLiveKit:
    return FakeLiveKit(monkeypatch, [person("agent-ava", api.ParticipantInfo.Kind.AGENT)])


async def guide(world: World, call: Conversation) -> None:
    audit = {"user": world.users["supervisor"]}
    await sync_to_async(guidance.give)(call, mode="whisper", text=TEXT, audit=audit)


async def test_guidance_reaches_transcript_readers_who_see_the_call(world: World) -> None:
    roles = ("admin", "supervisor", "qa", "viewer")
    sockets = {role: await connect(world.users[role]) for role in roles}
    call = world.conversations["in_progress"]
    await guide(world, call)
    got = {role: await everything(s, world) for role, s in sockets.items()}

    for role in ("admin", "supervisor", "qa"):
        pending, delivered = got[role]
        assert pending["type"] == delivered["type"] == "guidance.updated"
        assert (pending["event"], delivered["event"]) == ("pending", "delivered")
        assert pending["conversation"]["id"] == str(call.pk)
        assert delivered["guidance"]["text"] == TEXT
        assert delivered["guidance"]["status"] == "delivered"
        assert delivered["guidance"]["author"] == "supervisor"
        assert delivered["guidance"]["id"] == pending["guidance"]["id"]
        assert set(delivered) == {"type", "event", "conversation", "guidance"}
    assert got["viewer"] == []  # not a word of it
    # A glance at the call, on record before it was shown: one row per reader.
    readers = await sync_to_async(
        lambda: sorted(TranscriptRead.objects.values_list("user__username", flat=True))
    )()
    assert readers == ["admin", "qa", "supervisor"]
    for socket in sockets.values():
        await socket.disconnect()


async def test_guidance_in_another_teams_call_reaches_only_those_who_see_it(
    world: World,
) -> None:
    supervisor = await connect(world.users["supervisor"])  # team Support only
    admin = await connect(world.users["admin"])
    await guide(world, world.conversations["other_team"])
    assert await everything(supervisor, world) == []
    assert [m["event"] for m in await everything(admin, world)] == ["pending", "delivered"]
    await supervisor.disconnect()
    await admin.disconnect()


async def test_a_listener_event_names_the_listener(world: World) -> None:
    admin = await connect(world.users["admin"])
    call = world.conversations["in_progress"]
    now = timezone.now()
    session = await sync_to_async(sessions.create)(
        call,
        identity="listener-ana",
        via="portal",
        expires_at=now + dt.timedelta(hours=1),
        audit={"user": world.users["supervisor"]},
    )
    await sync_to_async(sessions.join)(session, now)
    (message,) = await everything(admin, world)
    assert message["type"] == "listener.updated" and message["event"] == "joined"
    assert message["listener"]["id"] == str(session.pk)
    assert (message["listener"]["via"], message["listener"]["name"]) == ("portal", "supervisor")
    assert message["listener"]["joined_at"].endswith("Z")
    assert TEXT not in json.dumps(message)
    await admin.disconnect()
