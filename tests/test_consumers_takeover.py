"""consumers.py, takeover events: ``takeover.updated`` reaches those who may see a call's
listeners (admins, supervisors, QA; never viewers) and see the call, as ``listener.updated``
does, with who holds it; nothing of it is a transcript read.

The real path: ``takeover.take_over`` and ``hand_back`` commit, ``events.publish_takeover``
sends on commit through the in-memory channel layer, the consumer filters per socket
(LiveKit faked: tests/api/test_views_takeover.py's ``AgentRoom``).
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from livekit import api

from anyreach_listen.assist import takeover
from anyreach_listen.models import Conversation, TranscriptRead
from tests.api.test_views_takeover import AgentRoom
from tests.assist.test_guidance import person
from tests.support.sockets import connect, everything
from tests.support.world import World

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _in_memory_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture(autouse=True)
def _agent_room(monkeypatch: pytest.MonkeyPatch) -> AgentRoom:
    return AgentRoom(monkeypatch, [person("agent-ava", api.ParticipantInfo.Kind.AGENT)])


async def take_over_and_hand_back(world: World, call: Conversation) -> None:
    audit = {"user": world.users["supervisor"]}
    await sync_to_async(takeover.take_over)(call, audit=audit)
    await sync_to_async(takeover.hand_back)(call)


async def test_takeover_events_reach_those_who_see_listeners_on_the_call(world: World) -> None:
    roles = ("admin", "supervisor", "qa", "viewer")
    sockets = {role: await connect(world.users[role]) for role in roles}
    call = world.conversations["in_progress"]
    await take_over_and_hand_back(world, call)
    got = {role: await everything(s, world) for role, s in sockets.items()}

    for role in ("admin", "supervisor", "qa"):
        started, ended, resumed = got[role]
        assert {m["type"] for m in got[role]} == {"takeover.updated"}
        assert [m["event"] for m in got[role]] == ["started", "ended", "resumed"]
        assert started["conversation"]["id"] == str(call.pk)
        assert set(started) == {"type", "event", "conversation", "takeover"}
        held = started["takeover"]
        assert (held["holder"], held["ended_at"], held["ended_by"]) == ("supervisor", None, None)
        assert ended["takeover"]["id"] == held["id"]
        assert ended["takeover"]["ended_by"] == "handed_back"
        assert resumed["takeover"]["resumed_at"] is not None
    assert got["viewer"] == []  # presence is not for viewers
    # Who holds a call is presence, not a word of what was said: no read on record.
    assert not await sync_to_async(TranscriptRead.objects.exists)()
    for socket in sockets.values():
        await socket.disconnect()


async def test_a_takeover_of_another_teams_call_reaches_only_those_who_see_it(
    world: World,
) -> None:
    supervisor = await connect(world.users["supervisor"])  # team Support only
    admin = await connect(world.users["admin"])
    audit = {"user": world.users["admin"]}
    await sync_to_async(takeover.take_over)(world.conversations["other_team"], audit=audit)
    assert await everything(supervisor, world) == []
    (started,) = await everything(admin, world)
    assert (started["event"], started["takeover"]["holder"]) == ("started", "admin")
    await supervisor.disconnect()
    await admin.disconnect()


async def test_another_organizations_takeover_reaches_nobody_here(world: World) -> None:
    admin = await connect(world.users["admin"])
    audit = {"user": world.users["outsider"]}
    await sync_to_async(takeover.take_over)(world.conversations["other_org"], audit=audit)
    assert await everything(admin, world) == []
    await admin.disconnect()
