"""consumers.py, transcript events: a final line (``transcript.segment``) reaches the sockets
of people who see the call and may read its transcript; viewers, other teams and other
organizations get nothing of it. Interim text never goes on the stream.

The real path: ``transcripts.record`` commits, ``events.publish_segment`` sends on commit
through the in-memory channel layer, the consumer filters per socket.
"""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from anyreach_listen.models import Conversation
from anyreach_listen.transcripts import SegmentIn, record
from tests.support.world import World
from tests.test_consumers_alerts import _in_memory_layer, connect, everything

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
__all__ = ["_in_memory_layer"]  # the autouse fixture, imported to apply here too


async def say(call: Conversation, *updates: SegmentIn) -> None:
    await sync_to_async(record)(call, list(updates))


async def test_a_final_line_reaches_transcript_readers_who_see_the_call(world: World) -> None:
    roles = ("admin", "supervisor", "qa", "viewer", "outsider")
    sockets = {role: await connect(world.users[role]) for role in roles}
    call = world.conversations["in_progress"]
    await say(call, SegmentIn("u1", "user", "My card was", False))
    await say(call, SegmentIn("u1", "user", "My card was declined yesterday.", True))
    got = {role: await everything(s) for role, s in sockets.items()}

    for role in ("admin", "supervisor", "qa"):
        (message,) = got[role]  # one message for the final, none for the interim
        assert message["type"] == "transcript.segment", role
        assert message["event"] == "transcript"
        assert message["conversation"]["id"] == str(call.pk)
        segment = message["segment"]
        assert (segment["id"], segment["role"]) == ("u1", "user")
        assert segment["text"] == "My card was declined yesterday."
        assert segment["at"]
    # A viewer sees the call but never what was said; the outsider does not see it.
    assert got["viewer"] == []
    assert got["outsider"] == []
    for socket in sockets.values():
        await socket.disconnect()


async def test_lines_of_another_teams_or_organizations_call_stay_with_those_who_see_it(
    world: World,
) -> None:
    supervisor = await connect(world.users["supervisor"])  # team Support of Acme only
    admin = await connect(world.users["admin"])  # all of Acme
    outsider = await connect(world.users["outsider"])  # admin of Other
    await say(world.conversations["other_team"], SegmentIn("a1", "agent", "Sales here.", True))
    await say(world.conversations["other_org"], SegmentIn("a1", "agent", "Other org.", True))

    assert await everything(supervisor) == []
    assert [m["segment"]["text"] for m in await everything(admin)] == ["Sales here."]
    assert [m["segment"]["text"] for m in await everything(outsider)] == ["Other org."]
    for socket in (supervisor, admin, outsider):
        await socket.disconnect()


async def test_a_repeated_final_is_not_sent_again(world: World) -> None:
    supervisor = await connect(world.users["supervisor"])
    call = world.conversations["in_progress"]
    final = SegmentIn("a1", "agent", "Hello, how can I help?", True)
    await say(call, final)
    await say(call, final)  # a retried push or a second recorder
    messages = await everything(supervisor)
    assert [m["segment"]["id"] for m in messages] == ["a1"]
    assert "how can I help" in json.dumps(messages)
    await supervisor.disconnect()
