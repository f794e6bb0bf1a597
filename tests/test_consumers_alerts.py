"""consumers.py, alert events: everyone who sees the call gets ``alert.raised``; only those
who may read its transcript get the phrase; nobody gets segment text, viewers nothing of it.
An alert with its phrase is a glance at the call, audited as its lines are (a row the first
time in the hour per person and call; not sent when the row cannot be written); a viewer's
alert discloses nothing and is not audited.

The real path: ``transcripts.record`` commits, ``events.publish_alert`` sends on commit
through the in-memory channel layer, the consumer filters per socket.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.utils import timezone

from anyreach_listen import alerts, disclosure
from anyreach_listen.events import publish_alert
from anyreach_listen.models import Alert, Conversation, TranscriptRead, TranscriptSegment
from anyreach_listen.transcripts import SegmentIn, record
from tests.support.sockets import connect, everything
from tests.support.world import World

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TEXT = "Hi, I was charged twice for my order last week."


@pytest.fixture(autouse=True)
def _in_memory_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


async def say(call: Conversation, text: str = TEXT) -> None:
    await sync_to_async(record)(call, [SegmentIn("u1", "user", text, True)])


async def test_who_gets_what_of_an_alert(world: World) -> None:
    await sync_to_async(alerts.create_rule)(world.org, phrase="charged twice", severity="critical")
    sockets = {role: await connect(world.users[role]) for role in ("admin", "supervisor", "viewer")}
    await say(world.conversations["in_progress"])
    got = {role: await everything(s, world) for role, s in sockets.items()}
    alerts_got = {role: [m for m in got[role] if m["type"] == "alert.raised"] for role in got}

    for role in ("admin", "supervisor"):
        (message,) = alerts_got[role]
        assert message["can_listen"] is True
        assert message["conversation"]["id"] == str(world.conversations["in_progress"].pk)
        assert message["alert"]["phrase"] == "charged twice"
        assert message["alert"]["severity"] == "critical"
        assert message["alert"]["role"] == "user"
    (seen,) = got["viewer"]  # the alert only: no transcript line
    assert seen["type"] == "alert.raised"
    assert set(seen["alert"]) == {"id", "severity", "raised_at"}
    assert seen["alert"]["severity"] == "critical"
    assert seen["alert"]["id"] == alerts_got["supervisor"][0]["alert"]["id"]
    assert seen["can_listen"] is False  # a viewer's notice offers no Listen

    # An alert carries no segment text (the line itself is a transcript.segment, for
    # readers only); the matched phrase reaches no viewer.
    for role, messages in alerts_got.items():
        raw = json.dumps(messages)
        assert "order last week" not in raw, role
        if role == "viewer":
            assert "charged" not in raw
    for socket in sockets.values():
        await socket.disconnect()


async def test_an_alert_in_another_teams_call_reaches_only_those_who_see_it(
    world: World,
) -> None:
    await sync_to_async(alerts.create_rule)(world.org, phrase="charged twice")
    supervisor = await connect(world.users["supervisor"])  # team Support only
    admin = await connect(world.users["admin"])
    await say(world.conversations["other_team"])  # a Sales call
    assert await everything(supervisor, world) == []
    # The line first, then its alert (both sent on the same commit, in that order).
    assert [m["type"] for m in await everything(admin, world)] == [
        "transcript.segment",
        "alert.raised",
    ]
    await supervisor.disconnect()
    await admin.disconnect()


async def test_a_viewer_gets_no_transcript_text_while_a_call_is_recorded(world: World) -> None:
    """Interim and final segments, with and without matches: the viewer's socket
    carries no word of them."""
    await sync_to_async(alerts.create_rule)(world.org, phrase="refund")
    viewer = await connect(world.users["viewer"])
    call = world.conversations["in_progress"]
    words = ["Welcome to Acme billing desk", "I need a refund for order 4417", "Certainly"]
    for index, text in enumerate(words):
        await sync_to_async(record)(
            call,
            [
                SegmentIn(f"s{index}", "agent" if index % 2 == 0 else "user", text[:9], False),
                SegmentIn(f"s{index}", "agent" if index % 2 == 0 else "user", text, True),
            ],
        )
    messages = await everything(viewer, world)
    assert [m["type"] for m in messages] == ["alert.raised"]
    raw = json.dumps(messages).lower()
    for text in words:
        for word in text.lower().split():
            if len(word) > 3:
                assert word not in raw, word
    await viewer.disconnect()


# --- an alert's phrase is an audited glance ----------------------------------------------------


def alert_without_its_line(
    world: World, call: Conversation, segment_id: str = "u1", position: int = 1
) -> Alert:
    """An alert row on a stored segment, made without publishing the segment (so the
    alert alone reaches the sockets)."""
    rule = alerts.create_rule(world.org, phrase=f"charged twice {segment_id}")
    segment = TranscriptSegment.objects.create(
        conversation=call,
        segment_id=segment_id,
        role="user",
        text=f"I was charged twice {segment_id}.",
        final=True,
        first_seen_at=timezone.now(),
        final_at=timezone.now(),
        position=position,
    )
    return Alert.objects.create(conversation=call, rule=rule, segment=segment)


async def raise_alone(world: World, call: Conversation, segment_id: str, position: int) -> None:
    alert = await sync_to_async(alert_without_its_line)(world, call, segment_id, position)
    await sync_to_async(publish_alert)(alert, call)


@sync_to_async
def reads(user: User) -> list[tuple[str, str]]:
    rows = TranscriptRead.objects.filter(user=user).order_by("read_at")
    return [(str(r.conversation_id), r.via) for r in rows]


def phrases(messages: list[dict[str, Any]]) -> list[str | None]:
    return [m["alert"].get("phrase") for m in messages if m["type"] == "alert.raised"]


async def test_an_alert_to_a_reader_is_a_glance_audited_once_an_hour(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    supervisor, viewer = world.users["supervisor"], world.users["viewer"]
    reader, watcher = await connect(supervisor), await connect(viewer)
    call = world.conversations["in_progress"]
    asked: list[object] = []
    real = disclosure.audit_glances

    def counted(user: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
        asked.append(user)
        return real(user, *args, **kwargs)

    monkeypatch.setattr(disclosure, "audit_glances", counted)
    await raise_alone(world, call, "u1", 1)
    assert phrases(await everything(reader, world)) == ["charged twice u1"]
    assert await reads(supervisor) == [(str(call.pk), "portal")]

    await raise_alone(world, call, "u2", 2)  # the same call within the hour: no row
    assert phrases(await everything(reader, world)) == ["charged twice u2"]
    assert len(await reads(supervisor)) == 1
    assert asked == [supervisor]  # the socket remembers the window: one ask, one row

    # A viewer gets id, severity and time, and nothing is audited for them.
    assert phrases(await everything(watcher, world)) == [None, None]
    assert await reads(viewer) == []

    later = time.time() + disclosure.GLANCE_WINDOW + 1
    monkeypatch.setattr(time, "time", lambda: later)
    await raise_alone(world, call, "u3", 3)
    assert phrases(await everything(reader, world)) == ["charged twice u3"]
    assert len(await reads(supervisor)) == 2  # the next hour: a row again
    for socket in (reader, watcher):
        await socket.disconnect()


async def test_an_alert_whose_glance_cannot_be_audited_is_not_sent_to_a_reader(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    supervisor = world.users["supervisor"]
    reader, watcher = await connect(supervisor), await connect(world.users["viewer"])
    call = world.conversations["in_progress"]
    real = disclosure.audit_glances

    def broken(*args: Any, **kwargs: Any) -> dict[str, float]:
        raise RuntimeError("the database is away")

    monkeypatch.setattr(disclosure, "audit_glances", broken)
    await raise_alone(world, call, "u1", 1)
    assert await everything(reader, world) == []
    assert phrases(await everything(watcher, world)) == [None]  # the viewer's needs no row
    monkeypatch.setattr(disclosure, "audit_glances", real)
    await raise_alone(world, call, "u2", 2)  # the next alert tries again
    assert phrases(await everything(reader, world)) == ["charged twice u2"]
    assert len(await reads(supervisor)) == 1
    for socket in (reader, watcher):
        await socket.disconnect()
