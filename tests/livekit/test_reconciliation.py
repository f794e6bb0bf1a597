"""Reconciliation with LiveKit (``reconciliation.py``, run by ``sweep_listeners``): an
in-progress call whose room has been gone for more than ``ROOM_GONE_GRACE`` ends as
failed (``room_gone``). LiveKit's ListRooms is faked here; a real server restarted under
a live call is in ``tests/e2e/test_room_gone.py``."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from livekit import api

from anyreach_listen import conversations
from anyreach_listen.listening.revocation import SweepResult
from anyreach_listen.livekit import reconciliation
from anyreach_listen.management.commands import sweep_listeners
from anyreach_listen.models import Conversation, ConversationStatus, ListenSession
from tests.support.listeners import fake_remove_listeners, mint_session
from tests.support.world import World

S = ConversationStatus
GRACE = 60
OTHERS = {"room-other-team", "room-other-org"}  # the world's other in-progress calls' rooms
Capture = Callable[..., Any]


class FakeLiveKit:
    """LiveKit's RoomService as far as ListRooms goes: ``rooms`` are open; ``down``
    makes every call fail as an unreachable server's would."""

    def __init__(self) -> None:
        self.rooms: set[str] = set()
        self.metadata: dict[str, str] = {}
        self.requests: list[list[str]] = []
        self.down = False
        self.room = self

    async def list_rooms(self, request: api.ListRoomsRequest) -> api.ListRoomsResponse:
        if self.down:
            raise ConnectionRefusedError("Connection refused")
        self.requests.append(list(request.names))
        names = [n for n in request.names if n in self.rooms]
        return api.ListRoomsResponse(
            rooms=[
                api.Room(name=n, sid=f"RM_{n}", metadata=self.metadata.get(n, "")) for n in names
            ]
        )


@pytest.fixture
def livekit(monkeypatch: pytest.MonkeyPatch) -> FakeLiveKit:
    fake = FakeLiveKit()

    @contextlib.asynccontextmanager
    async def client() -> AsyncIterator[FakeLiveKit]:
        yield fake

    monkeypatch.setattr(reconciliation, "livekit_api", client)
    return fake


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    from anyreach_listen import conversations

    monkeypatch.setattr(
        conversations, "publish_conversation", lambda c, e: events.append((str(c.pk), e))
    )
    return events


def _row(call: Conversation) -> Conversation:
    return Conversation.objects.get(pk=call.pk)


def _later(seconds: float) -> dt.datetime:
    return timezone.now() + dt.timedelta(seconds=seconds)


def test_a_room_missing_on_two_sweeps_a_grace_apart_ends_the_call_as_failed_room_gone(
    world: World,
    livekit: FakeLiveKit,
    published: list[tuple[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Capture,
) -> None:
    removed = fake_remove_listeners(monkeypatch)
    call = world.conversations[S.IN_PROGRESS]
    session = mint_session(world, user=world.users["supervisor"])
    livekit.rooms = set(OTHERS)

    first = _later(1)
    assert reconciliation.reconcile(now=first) == reconciliation.Reconciled(True, 1, 0)
    assert _row(call).status == S.IN_PROGRESS  # missing once: the call goes on
    assert _row(call).room_missing_since == first
    assert reconciliation.reconcile(now=first + dt.timedelta(seconds=GRACE - 1)).closed == 0
    assert _row(call).status == S.IN_PROGRESS and published == []

    at = first + dt.timedelta(seconds=GRACE)
    with django_capture_on_commit_callbacks(execute=True):
        result = reconciliation.reconcile(now=at)
    assert result == reconciliation.Reconciled(checked=True, missing=1, closed=1)
    row = _row(call)
    # It ended when its room was first seen gone.
    assert (row.status, row.ended_at, row.metadata["ended_by"]) == (S.FAILED, first, "room_gone")
    assert published == [(str(call.pk), "room_gone")]  # the portal's dashboards follow
    # Its listener is revoked and taken out of the room (LiveKit says "not there").
    assert ListenSession.objects.get(pk=session.pk).revoked_at is not None
    assert removed == [("room-in_progress", session.listener_identity)]
    # The calls whose rooms are open are untouched.
    for name in ("other_team", "other_org"):
        assert _row(world.conversations[name]).status == S.IN_PROGRESS
    # One ListRooms per sweep, naming every live call's room.
    rooms = ["room-in_progress", "room-other-org", "room-other-team", "room-ringing"]
    assert livekit.requests == [[*rooms, "room-triggered"]] * 3


def test_a_room_seen_open_again_within_the_grace_starts_the_clock_over(
    world: World, livekit: FakeLiveKit
) -> None:
    call = world.conversations[S.IN_PROGRESS]
    livekit.rooms = set(OTHERS)
    start = _later(1)
    reconciliation.reconcile(now=start)
    livekit.rooms.add("room-in_progress")  # LiveKit restarted; the participants came back
    reconciliation.reconcile(now=start + dt.timedelta(seconds=30))
    assert _row(call).room_missing_since is None
    livekit.rooms.discard("room-in_progress")
    again = start + dt.timedelta(seconds=GRACE + 1)
    assert reconciliation.reconcile(now=again).closed == 0  # missing since `again` only
    assert _row(call).status == S.IN_PROGRESS
    assert reconciliation.reconcile(now=again + dt.timedelta(seconds=GRACE)).closed == 1
    assert _row(call).status == S.FAILED


def test_a_call_registered_before_its_room_opens_gets_the_whole_grace(
    world: World, livekit: FakeLiveKit
) -> None:
    # A platform registers the call with its room (REST), then LiveKit opens the room.
    call, _ = conversations.register(world.org, room_name="call-opening")
    livekit.rooms = {"room-in_progress", *OTHERS}
    assert reconciliation.reconcile(now=_later(0)).closed == 0
    assert _row(call).room_missing_since is not None
    livekit.rooms.add("call-opening")
    assert reconciliation.reconcile(now=_later(GRACE + 1)).closed == 0
    row = _row(call)
    assert (row.status, row.room_missing_since) == (S.IN_PROGRESS, None)


def test_triggered_and_ringing_calls_are_not_looked_at(world: World, livekit: FakeLiveKit) -> None:
    # Their rooms open when they are answered (room_started moves them to in progress).
    for seconds in (0, GRACE + 1, 10 * GRACE):
        reconciliation.reconcile(now=_later(seconds))
    for status in (S.TRIGGERED, S.RINGING):
        row = _row(world.conversations[status])
        assert (row.status, row.room_missing_since) == (status, None)
    assert _row(world.conversations[S.IN_PROGRESS]).status == S.FAILED  # (the control)


def test_an_open_room_another_organization_owns_is_taken_from_its_call(
    world: World, livekit: FakeLiveKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its room_started webhook was missed; no recorder runs (RECORDER None), so the
    # recorders' sweep, which also checks, does not.
    fake_remove_listeners(monkeypatch)
    squatter, _ = conversations.register(world.org, room_name="call-77")
    livekit.rooms = {"room-in_progress", *OTHERS, "call-77"}
    livekit.metadata["call-77"] = json.dumps(
        {"anyreach": {"organization_id": str(world.other_org.pk)}}
    )
    livekit.metadata["room-in_progress"] = json.dumps(
        {"anyreach": {"organization_id": str(world.org.pk)}}
    )
    assert reconciliation.reconcile().lost == 1
    row = _row(squatter)
    assert (row.status, row.livekit_room, row.metadata["ended_by"]) == (
        S.FAILED,
        None,
        "room_not_owned",
    )
    assert _row(world.conversations[S.IN_PROGRESS]).status == S.IN_PROGRESS  # its own


def test_a_call_changed_within_the_grace_is_kept(world: World, livekit: FakeLiveKit) -> None:
    # Its platform or LiveKit's webhooks still update it: someone says it is alive.
    call = world.conversations[S.IN_PROGRESS]
    livekit.rooms = set(OTHERS)
    now = timezone.now()
    Conversation.objects.filter(pk=call.pk).update(
        room_missing_since=now - dt.timedelta(seconds=2 * GRACE), updated_at=now
    )
    assert reconciliation.reconcile(now=now).closed == 0
    assert _row(call).status == S.IN_PROGRESS
    Conversation.objects.filter(pk=call.pk).update(updated_at=now - dt.timedelta(seconds=GRACE))
    assert reconciliation.reconcile(now=now).closed == 1
    assert _row(call).status == S.FAILED


def test_livekit_unreachable_changes_nothing(
    world: World, livekit: FakeLiveKit, caplog: pytest.LogCaptureFixture
) -> None:
    call = world.conversations[S.IN_PROGRESS]
    long_ago = timezone.now() - dt.timedelta(hours=1)
    Conversation.objects.filter(pk=call.pk).update(room_missing_since=long_ago, updated_at=long_ago)
    livekit.down = True
    assert reconciliation.reconcile() == reconciliation.Reconciled(checked=False)
    assert "no call is closed" in caplog.text
    row = _row(call)
    assert (row.status, row.room_missing_since) == (S.IN_PROGRESS, long_ago)
    assert Conversation.objects.filter(room_missing_since__isnull=False).count() == 1


def test_the_grace_is_a_setting(world: World, livekit: FakeLiveKit, settings: Any) -> None:
    settings.ANYREACH_LISTEN = {**settings.ANYREACH_LISTEN, "ROOM_GONE_GRACE": 5}
    start = _later(1)
    reconciliation.reconcile(now=start)
    assert reconciliation.reconcile(now=start + dt.timedelta(seconds=4)).closed == 0
    assert reconciliation.reconcile(now=start + dt.timedelta(seconds=5)).closed == 3


def test_sweep_listeners_closes_and_says_how_many(
    world: World, livekit: FakeLiveKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweep_listeners, "sweep", lambda: SweepResult(revoked=0, removed=0))
    livekit.rooms = set(OTHERS)
    call = world.conversations[S.IN_PROGRESS]
    out = _sweep()
    assert "closed 0 call(s) whose room is gone" in out
    long_ago = timezone.now() - dt.timedelta(seconds=GRACE + 1)
    Conversation.objects.filter(pk=call.pk).update(room_missing_since=long_ago, updated_at=long_ago)
    assert "closed 1 call(s) whose room is gone (room_gone)" in _sweep()
    assert _row(call).status == S.FAILED


def _sweep() -> str:
    out = io.StringIO()
    call_command("sweep_listeners", stdout=out)
    return out.getvalue()


def test_a_portal_minting_remotely_reconciles_nothing(
    world: World, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its calls mirror a remote platform's rooms, which this LiveKit need not hold.
    settings.ANYREACH_LISTEN = {
        **settings.ANYREACH_LISTEN,
        "REMOTE_MINT": {"URL": "https://platform.example", "API_KEY": "ak_x"},
    }

    async def no_rooms(names: list[str]) -> dict[str, Any]:
        raise AssertionError("LiveKit must not be asked")

    monkeypatch.setattr(reconciliation, "open_rooms", no_rooms)
    assert reconciliation.reconcile() == reconciliation.Reconciled(checked=False)
    assert Conversation.objects.filter(room_missing_since__isnull=False).count() == 0
