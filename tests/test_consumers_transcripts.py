"""consumers.py, transcript events: a final line (``transcript.segment``) reaches the sockets
of people who see the call and may read its transcript; viewers, other teams and other
organizations get nothing of it. Interim text never goes on the stream. Each line sent is
an audited glance: a ``TranscriptRead`` row (via the portal) the first time in the hour
per person and call, none after.

The real path: ``transcripts.record`` commits, ``events.publish_segment`` sends on commit
through the in-memory channel layer, the consumer filters per socket.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from anyreach_listen import disclosure, transcripts
from anyreach_listen.events import publish_alert, publish_conversation
from anyreach_listen.models import (
    Conversation,
    TranscriptRead,
    TranscriptVia,
)
from anyreach_listen.transcripts import SegmentIn, record
from tests.support.sockets import connect, everything
from tests.support.world import World
from tests.test_consumers_alerts import _in_memory_layer, alert_without_its_line

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
    got = {role: await everything(s, world) for role, s in sockets.items()}

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

    assert await everything(supervisor, world) == []
    assert [m["segment"]["text"] for m in await everything(admin, world)] == ["Sales here."]
    assert [m["segment"]["text"] for m in await everything(outsider, world)] == ["Other org."]
    for socket in (supervisor, admin, outsider):
        await socket.disconnect()


async def test_a_repeated_final_is_not_sent_again(world: World) -> None:
    supervisor = await connect(world.users["supervisor"])
    call = world.conversations["in_progress"]
    final = SegmentIn("a1", "agent", "Hello, how can I help?", True)
    await say(call, final)
    await say(call, final)  # a retried push or a second recorder
    messages = await everything(supervisor, world)
    assert [m["segment"]["id"] for m in messages] == ["a1"]
    assert "how can I help" in json.dumps(messages)
    await supervisor.disconnect()


# --- every line sent is an audited glance, once an hour per person and call -------------------


@sync_to_async
def reads(user: User) -> list[tuple[str, str, str | None]]:
    rows = TranscriptRead.objects.filter(user=user).order_by("read_at")
    return [(str(r.conversation_id), r.via, r.client_ip) for r in rows]


async def connect_from(user: User, address: str) -> WebsocketCommunicator:
    """``connect``, with the client address a server puts in the scope."""
    from channels.routing import URLRouter

    from anyreach_listen.routing import websocket_urlpatterns

    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/listen/events/")
    communicator.scope["user"] = user
    communicator.scope["client"] = [address, 50123]
    connected, _ = await communicator.connect()
    assert connected
    return communicator


def texts(messages: list[dict[str, Any]]) -> list[str]:
    return [m["segment"]["text"] for m in messages if m["type"] == "transcript.segment"]


async def test_a_line_sent_is_audited_once_an_hour_per_call(world: World) -> None:
    supervisor, viewer = world.users["supervisor"], world.users["viewer"]
    reader = await connect_from(supervisor, "203.0.113.9")
    watcher = await connect(viewer)
    call, other = world.conversations["in_progress"], world.conversations["ringing"]

    await say(call, SegmentIn("a1", "agent", "Hello, how can I help?", True))
    assert texts(await everything(reader, world)) == ["Hello, how can I help?"]
    assert await reads(supervisor) == [(str(call.pk), "portal", "203.0.113.9")]

    await say(call, SegmentIn("u1", "user", "I was charged twice.", True))
    assert texts(await everything(reader, world)) == ["I was charged twice."]
    assert len(await reads(supervisor)) == 1  # the same call within the hour: no row

    await say(other, SegmentIn("a1", "agent", "Thanks for calling.", True))
    assert texts(await everything(reader, world)) == ["Thanks for calling."]
    assert await reads(supervisor) == [
        (str(call.pk), "portal", "203.0.113.9"),
        (str(other.pk), "portal", "203.0.113.9"),
    ]

    assert await everything(watcher, world) == []  # a viewer: no line, so no read
    assert await reads(viewer) == []
    for socket in (reader, watcher):
        await socket.disconnect()


async def test_two_sockets_of_one_person_write_one_row_per_call(world: World) -> None:
    supervisor = world.users["supervisor"]
    tabs = [await connect(supervisor), await connect(supervisor)]
    call = world.conversations["in_progress"]
    await say(call, SegmentIn("a1", "agent", "Hello.", True))
    for tab in tabs:
        assert texts(await everything(tab, world)) == ["Hello."]
    assert await reads(supervisor) == [(str(call.pk), "portal", None)]
    for tab in tabs:
        await tab.disconnect()


async def test_the_conversation_pages_read_covers_the_lines_that_follow_it(world: World) -> None:
    """A portal read (the page view) opens the hour: the page's socket adds no row."""
    supervisor = world.users["supervisor"]
    call = world.conversations["in_progress"]
    await sync_to_async(transcripts.read)(
        call, via=TranscriptVia.PORTAL, audit={"user": supervisor}
    )
    page = await connect(supervisor)
    await say(call, SegmentIn("a1", "agent", "Hello.", True))
    assert texts(await everything(page, world)) == ["Hello."]
    assert len(await reads(supervisor)) == 1
    await page.disconnect()


async def test_after_the_hour_a_line_is_audited_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    supervisor = world.users["supervisor"]
    socket = await connect(supervisor)
    call = world.conversations["in_progress"]
    await say(call, SegmentIn("a1", "agent", "Hello.", True))
    await everything(socket, world)
    now = time.time() + disclosure.GLANCE_WINDOW + 1
    monkeypatch.setattr(time, "time", lambda: now)
    await say(call, SegmentIn("u1", "user", "Hi.", True))
    assert texts(await everything(socket, world)) == ["Hi."]
    assert len(await reads(supervisor)) == 2
    await socket.disconnect()


async def test_a_socket_asks_nobody_again_for_a_call_it_audited_within_the_hour(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a call's first line in the hour leaves the event loop (B4: the fan-out of
    lines to many sockets must not queue behind the database or the cache)."""
    socket = await connect(world.users["supervisor"])
    call = world.conversations["in_progress"]
    await say(call, SegmentIn("a1", "agent", "Hello.", True))
    await everything(socket, world)
    asked: list[object] = []
    real = disclosure.audit_glances

    def counted(*args: Any, **kwargs: Any) -> dict[str, float]:
        asked.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(disclosure, "audit_glances", counted)
    await say(call, SegmentIn("u1", "user", "Hi.", True))
    await say(world.conversations["ringing"], SegmentIn("a1", "agent", "Hello there.", True))
    assert texts(await everything(socket, world)) == ["Hi.", "Hello there."]
    assert len(asked) == 1  # the other call's first line only
    await socket.disconnect()


async def test_a_line_that_cannot_be_audited_is_not_sent(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    supervisor = world.users["supervisor"]
    socket = await connect(supervisor)
    call = world.conversations["in_progress"]
    real = disclosure.audit_glances

    def broken(*args: Any, **kwargs: Any) -> dict[str, float]:
        raise RuntimeError("the database is away")

    monkeypatch.setattr(disclosure, "audit_glances", broken)
    await say(call, SegmentIn("a1", "agent", "Hello.", True))
    assert await everything(socket, world) == []
    monkeypatch.setattr(disclosure, "audit_glances", real)
    await say(call, SegmentIn("u1", "user", "Hi.", True))  # the next line tries again
    assert texts(await everything(socket, world)) == ["Hi."]
    assert len(await reads(supervisor)) == 1
    await socket.disconnect()


async def test_status_changes_and_a_viewers_alerts_ask_for_no_audit(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """They disclose no line: no glance, no row, not even a cache read. (A reader's alert
    names its phrase: a glance, ``tests/test_consumers_alerts.py``.)"""
    socket = await connect(world.users["supervisor"])
    viewer = await connect(world.users["viewer"])
    call = world.conversations["in_progress"]
    asked: list[object] = []

    def counted(*args: Any, **kwargs: Any) -> dict[str, float]:
        asked.append(args)
        return {}

    monkeypatch.setattr(disclosure, "audit_glances", counted)
    await sync_to_async(publish_conversation)(call, "room_started")
    assert [m["type"] for m in await everything(socket, world)] == ["conversation.updated"]
    alert = await sync_to_async(alert_without_its_line)(world, call)
    await sync_to_async(publish_alert)(alert, call)
    assert [m["type"] for m in await everything(viewer, world)] == [
        "conversation.updated",
        "alert.raised",
    ]
    assert asked == [(world.users["supervisor"], [str(call.pk)])]  # the reader's alert only
    for each in (socket, viewer):
        await each.disconnect()
