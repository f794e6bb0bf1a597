"""LiveKit webhooks about a takeover's supervisor (``supervisor-…``): joined and left kept on
the row (the sweep hands back one gone too long), and one that holds no takeover of the
call taken out of the room as it joins. No server: removals are recorded."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from anyreach_listen.assist import takeover
from anyreach_listen.livekit import webhooks
from anyreach_listen.models import Conversation, ConversationStatus, Takeover, TakeoverEnd
from tests.assist.test_takeover import TakeoverRoom
from tests.assist.test_takeover import room as room  # the fixture
from tests.support.livekit import deliver_webhook as post
from tests.support.livekit import webhook_event as event
from tests.support.world import World


@pytest.fixture
def removed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    taken_out: list[tuple[str, str]] = []

    async def remove_listeners(targets: Any) -> dict[str, bool]:
        taken_out.extend(targets)
        return {identity: True for _, identity in targets}

    monkeypatch.setattr(webhooks, "remove_listeners", remove_listeners)
    return taken_out


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(takeover, "publish_takeover", lambda row, e: seen.append(e))
    return seen


def held(world: World, call: str = ConversationStatus.IN_PROGRESS, **fields: Any) -> Takeover:
    now = timezone.now()
    return Takeover.objects.create(
        conversation=world.conversations[call],
        user=world.users["supervisor"],
        identity=f"supervisor-{uuid.uuid4()}",
        agent_identity="agent-ava",
        expires_at=now + dt.timedelta(minutes=5),
        **fields,
    )


def outcome(
    client: Client, name: str, identity: str, room: str = "room-in_progress", **kw: Any
) -> str:
    return str(post(client, event(name, room, identity=identity, **kw)).json()["outcome"])


def test_join_leave_and_rejoin_are_kept_and_published(
    world: World, client: Client, removed: list[tuple[str, str]], published: list[str]
) -> None:
    row = held(world)
    joined, left = int(time.time()) - 20, int(time.time()) - 5
    assert outcome(client, "participant_joined", row.identity, created_at=joined) == (
        "supervisor_joined"
    )
    row.refresh_from_db()
    assert int(row.joined_at.timestamp()) == joined and row.left_at is None  # type: ignore[union-attr]
    assert outcome(client, "participant_left", row.identity, created_at=left) == "supervisor_left"
    left_at = Takeover.objects.get(pk=row.pk).left_at
    assert left_at is not None and int(left_at.timestamp()) == left
    # A join delivered late (older than the leave) does not bring it back...
    assert outcome(client, "participant_joined", row.identity, created_at=joined) == "unchanged"
    # ...a real rejoin does: the 30 s count starts over when it leaves again.
    assert outcome(client, "participant_joined", row.identity) == "supervisor_joined"
    row.refresh_from_db()
    assert row.left_at is None and row.ended_at is None
    assert published == ["joined", "left", "joined"]
    assert removed == []


def test_gone_over_30_s_the_sweep_hands_back(
    world: World, client: Client, room: TakeoverRoom, removed: list[tuple[str, str]]
) -> None:
    row = held(world)
    outcome(client, "participant_joined", row.identity)
    left = int(time.time())
    outcome(client, "participant_left", row.identity, created_at=left)
    at = dt.datetime.fromtimestamp(left, tz=dt.UTC)
    assert takeover.sweep(now=at + dt.timedelta(seconds=30)) == 0
    assert takeover.sweep(now=at + dt.timedelta(seconds=31)) == 1
    row.refresh_from_db()
    assert row.ended_by == TakeoverEnd.LEFT and row.resumed_at is not None
    assert [kind for kind, _ in room.log] == ["remove", "resume"]


@pytest.mark.parametrize("case", ["ended", "another call's", "unknown"])
def test_a_supervisor_holding_no_takeover_of_the_call_is_taken_out_as_it_joins(
    world: World, client: Client, removed: list[tuple[str, str]], published: list[str], case: str
) -> None:
    if case == "ended":
        row = held(world, ended_at=timezone.now(), ended_by=TakeoverEnd.HANDED_BACK)
        identity, expected = row.identity, "supervisor_ended"
    elif case == "another call's":
        identity, expected = held(world, "other_team").identity, "supervisor_foreign"
    else:
        identity, expected = f"supervisor-{uuid.uuid4()}", "unknown_supervisor"
    assert outcome(client, "participant_joined", identity) == expected
    assert removed == [("room-in_progress", identity)]
    # Its leaving changes nothing and takes nothing out.
    assert outcome(client, "participant_left", identity) == expected
    assert removed == [("room-in_progress", identity)] and published == []
    assert not Takeover.objects.filter(identity=identity, joined_at__isnull=False).exists()


def test_a_hosts_own_participant_that_merely_starts_alike_is_left_alone(
    world: World, client: Client, removed: list[tuple[str, str]]
) -> None:
    assert outcome(client, "participant_joined", "supervisor-bob") == "unknown_supervisor"
    assert removed == []


def test_the_room_finishing_ends_it_with_no_removal_and_no_resume(
    world: World, client: Client, room: TakeoverRoom, removed: list[tuple[str, str]]
) -> None:
    row = held(world)
    assert outcome(client, "room_finished", "", room="room-in_progress") == "room_finished"
    row.refresh_from_db()
    assert row.ended_by == TakeoverEnd.CALL_ENDED and row.resumed_at is None
    assert Conversation.objects.get(pk=row.conversation_id).status == "completed"
    # Nothing to ask LiveKit: the room and everyone in it are gone, the agent too.
    assert room.log == [] and removed == []
