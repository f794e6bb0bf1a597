"""Dispatching transcript recorders (``recorder/dispatch.py``, ``livekit/service.ensure_agents``):
when a call gets a room, on ``room_started``, when a recorder leaves a live call, and
in the sweep; counted against LiveKit so triggers do not pile recorders up (no server:
the real one is in ``tests/e2e/test_recorder.py``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from google.protobuf.json_format import MessageToJson
from livekit import api

from anyreach_listen import conversations
from anyreach_listen.livekit.service import ensure_agents, run_sync
from anyreach_listen.models import Conversation, ConversationStatus
from anyreach_listen.recorder import dispatch as recorder_dispatch
from anyreach_listen.recorder.dispatch import Target
from tests.support.livekit import deliver_webhook
from tests.support.world import TEST_LISTEN_SETTINGS, World

AGENT_NAME = "anyreach-recorder"


@pytest.fixture
def dispatched(monkeypatch: pytest.MonkeyPatch) -> list[Target]:
    calls: list[Target] = []
    monkeypatch.setattr(recorder_dispatch, "in_background", calls.append)
    return calls


@pytest.fixture(autouse=True)
def recorder_on(settings: Any) -> None:
    # Recorders are opt-in (RECORDER None by default): this module's calls have them.
    settings.ANYREACH_LISTEN = {
        **settings.ANYREACH_LISTEN,
        "RECORDER": {"AGENT_NAME": AGENT_NAME, "PER_ROOM": 2},
    }


Capture = Callable[..., Any]


def test_a_conversation_registered_with_a_room_gets_recorders_after_commit(
    world: World, dispatched: list[Target], django_capture_on_commit_callbacks: Capture
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        call, _ = conversations.register(world.org, room_name="call-new")
        assert dispatched == []  # not before the commit
    assert dispatched == [Target("call-new", str(call.pk))]


def test_no_room_no_dispatch_then_the_room_given_later_dispatches(
    world: World, dispatched: list[Target], django_capture_on_commit_callbacks: Capture
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        call, _ = conversations.register(world.org)
    assert dispatched == []
    with django_capture_on_commit_callbacks(execute=True):
        conversations.update(call, room_name="call-later")
    assert dispatched == [Target("call-later", str(call.pk))]


def test_recorder_none_dispatches_nothing(
    world: World,
    dispatched: list[Target],
    settings: Any,
    django_capture_on_commit_callbacks: Capture,
) -> None:
    settings.ANYREACH_LISTEN = {**settings.ANYREACH_LISTEN, "RECORDER": None}
    with django_capture_on_commit_callbacks(execute=True):
        conversations.register(world.org, room_name="call-off")
    assert dispatched == []
    assert recorder_dispatch.sweep() == 0


def test_with_recorder_unset_no_dispatch_is_requested(
    world: World,
    dispatched: list[Target],
    settings: Any,
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Capture,
) -> None:
    # A site that configured no recorder (the default): LiveKit is never asked for one,
    # so it logs no "no worker is available" for each room.
    settings.ANYREACH_LISTEN = dict(TEST_LISTEN_SETTINGS)
    asked: list[str] = []

    async def ensure(room: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(room)

    monkeypatch.setattr(recorder_dispatch, "ensure_agents", ensure)
    with django_capture_on_commit_callbacks(execute=True):
        call, _ = conversations.register(world.org, room_name="call-unset")
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver_webhook(client, _event("room_started", "call-unset")).status_code == 200
    assert Conversation.objects.get(pk=call.pk).status == ConversationStatus.IN_PROGRESS
    assert recorder_dispatch.sweep() == 0
    assert (dispatched, asked) == ([], [])


def _event(
    name: str, room: str, *, kind: Any = None, attributes: dict[str, str] | None = None
) -> str:
    message = api.WebhookEvent(
        event=name,
        id=f"EV_{uuid.uuid4().hex[:12]}",
        created_at=int(time.time()),
        room=api.Room(name=room, sid=f"RM_{room}"),
    )
    if kind is not None:
        message.participant.CopyFrom(
            api.ParticipantInfo(identity="recorder-AJ_1", kind=kind, attributes=attributes or {})
        )
    return MessageToJson(message)


RECORDER: dict[str, Any] = {
    "kind": api.ParticipantInfo.Kind.AGENT,
    "attributes": {"lk.agent_name": AGENT_NAME},
}


def test_room_started_dispatches_to_an_active_call_only(
    world: World,
    client: Client,
    dispatched: list[Target],
    django_capture_on_commit_callbacks: Capture,
) -> None:
    live = world.conversations[ConversationStatus.IN_PROGRESS]
    ended = world.conversations[ConversationStatus.COMPLETED]
    with django_capture_on_commit_callbacks(execute=True):
        deliver_webhook(client, _event("room_started", live.livekit_room or ""))
    assert dispatched == [Target(live.livekit_room or "", str(live.pk))]
    if ended.livekit_room:
        with django_capture_on_commit_callbacks(execute=True):
            deliver_webhook(client, _event("room_started", ended.livekit_room))
        assert len(dispatched) == 1


def test_a_recorder_is_not_the_calls_agent_and_one_that_left_is_replaced(
    world: World,
    client: Client,
    dispatched: list[Target],
    django_capture_on_commit_callbacks: Capture,
) -> None:
    call = world.conversations[ConversationStatus.IN_PROGRESS]
    room = call.livekit_room or ""
    with django_capture_on_commit_callbacks(execute=True):
        joined = deliver_webhook(client, _event("participant_joined", room, **RECORDER))
    assert joined.json()["outcome"] == "recorder_joined"
    assert dispatched == []
    with django_capture_on_commit_callbacks(execute=True):
        left = deliver_webhook(client, _event("participant_left", room, **RECORDER))
    assert left.json()["outcome"] == "recorder_left"
    assert dispatched == [Target(room, str(call.pk), frozenset({"recorder-AJ_1"}))]
    # The call's agent presence is untouched.
    call.refresh_from_db()
    assert "agent" not in call.metadata


def test_only_livekits_marks_make_a_recorder(
    world: World,
    client: Client,
    dispatched: list[Target],
    django_capture_on_commit_callbacks: Capture,
) -> None:
    room = world.conversations[ConversationStatus.IN_PROGRESS].livekit_room or ""
    # A caller setting the attribute on itself is still a caller.
    caller: dict[str, Any] = {
        "kind": api.ParticipantInfo.Kind.STANDARD,
        "attributes": RECORDER["attributes"],
    }
    with django_capture_on_commit_callbacks(execute=True):
        left = deliver_webhook(client, _event("participant_left", room, **caller))
    assert left.json()["outcome"] == "ignored"
    # Another agent (the platform's own) is the call's agent.
    other: dict[str, Any] = {
        "kind": api.ParticipantInfo.Kind.AGENT,
        "attributes": {"lk.agent_name": "ava"},
    }
    with django_capture_on_commit_callbacks(execute=True):
        joined = deliver_webhook(client, _event("participant_joined", room, **other))
    assert joined.json()["outcome"] == "agent_joined"
    assert dispatched == []


def test_the_sweep_ensures_every_active_call_with_a_room(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[Target]] = []

    def fake(targets: Any) -> dict[str, Any]:
        seen.append(list(targets))
        return {}

    monkeypatch.setattr(recorder_dispatch, "ensure_now", fake)
    recorder_dispatch.sweep()
    (targets,) = seen
    active = Conversation.objects.active().exclude(livekit_room=None)
    assert {t.room for t in targets} == {c.livekit_room for c in active}
    assert all(
        c.is_active for c in Conversation.objects.filter(livekit_room__in=[t.room for t in targets])
    )


# --- ensure_agents against a fake LiveKit -------------------------------------------------


METADATA = '{"conversation_id": "c-1"}'


class FakeLiveKit:
    """The four LiveKit calls ensure_agents makes, over an in-memory room."""

    def __init__(self, *, room_open: bool = True) -> None:
        self.room_open = room_open
        self.participants: list[api.ParticipantInfo] = []
        self.dispatches: list[api.AgentDispatch] = []
        self.created: list[api.CreateAgentDispatchRequest] = []
        self.deleted: list[str] = []
        self.removed: list[str] = []
        self.room = self
        self.agent_dispatch = self

    async def list_rooms(self, req: api.ListRoomsRequest) -> api.ListRoomsResponse:
        rooms = [api.Room(name=n) for n in req.names] if self.room_open else []
        return api.ListRoomsResponse(rooms=rooms)

    async def list_participants(self, req: api.ListParticipantsRequest) -> Any:
        return api.ListParticipantsResponse(participants=self.participants)

    async def list_dispatch(self, room_name: str) -> list[api.AgentDispatch]:
        return list(self.dispatches)

    async def delete_dispatch(self, dispatch_id: str, room_name: str) -> api.AgentDispatch:
        self.deleted.append(dispatch_id)
        self.dispatches = [d for d in self.dispatches if d.id != dispatch_id]
        return api.AgentDispatch(id=dispatch_id)

    async def remove_participant(self, req: api.RoomParticipantIdentity) -> None:
        self.removed.append(req.identity)
        self.participants = [p for p in self.participants if p.identity != req.identity]

    async def create_dispatch(self, req: api.CreateAgentDispatchRequest) -> api.AgentDispatch:
        self.created.append(req)
        return api.AgentDispatch(id=f"AD_{len(self.created)}")

    def dispatch(
        self,
        dispatch_id: str,
        age: float,
        identity: str = "",
        name: str = AGENT_NAME,
        metadata: str = METADATA,
    ) -> None:
        jobs = [api.Job(state=api.JobState(participant_identity=identity))] if identity else []
        created = int((time.time() - age) * 1e9)
        self.dispatches.append(
            api.AgentDispatch(
                id=dispatch_id,
                agent_name=name,
                metadata=metadata,
                state=api.AgentDispatchState(jobs=jobs, created_at=created),
            )
        )

    def recorder(self, identity: str) -> None:
        self.participants.append(
            api.ParticipantInfo(
                identity=identity,
                kind=api.ParticipantInfo.Kind.AGENT,
                attributes={"lk.agent_name": AGENT_NAME},
            )
        )


def ensure(fake: FakeLiveKit, count: int = 2, gone: frozenset[str] = frozenset()) -> Any:
    return run_sync(
        ensure_agents("call-1", AGENT_NAME, count, METADATA, fake, gone=gone)  # type: ignore[arg-type]
    )


def test_a_room_not_open_gets_no_dispatch() -> None:
    fake = FakeLiveKit(room_open=False)
    assert ensure(fake).room_open is False
    assert fake.created == []


def test_an_empty_open_room_gets_its_count_with_the_metadata() -> None:
    fake = FakeLiveKit()
    assert ensure(fake).created == 2
    assert [(r.room, r.agent_name, r.metadata) for r in fake.created] == [
        ("call-1", AGENT_NAME, METADATA)
    ] * 2


def test_present_and_starting_recorders_count_so_triggers_do_not_pile_up() -> None:
    fake = FakeLiveKit()
    fake.recorder("recorder-AJ_a")
    fake.dispatch("AD_a", age=300, identity="recorder-AJ_a")  # live
    fake.dispatch("AD_b", age=1)  # just created: no job yet
    fake.dispatch("AD_c", age=10, identity="recorder-AJ_c")  # its recorder is joining
    fake.dispatch("AD_other", age=300, name="someone-else")  # not ours: left alone
    result = ensure(fake, count=3)
    assert (result.created, result.deleted, result.present) == (0, 0, 1)


def test_a_dispatch_whose_recorder_is_gone_is_deleted_and_replaced() -> None:
    fake = FakeLiveKit()
    fake.recorder("recorder-AJ_a")
    fake.dispatch("AD_a", age=300, identity="recorder-AJ_a")
    fake.dispatch("AD_dead", age=300, identity="recorder-AJ_killed")
    fake.dispatch("AD_never", age=6)  # no worker took it (LiveKit never retries)
    result = ensure(fake)
    assert fake.deleted == ["AD_dead", "AD_never"]
    assert (result.created, result.deleted) == (1, 2)


def test_another_conversations_recorder_leaves_the_room_and_is_replaced() -> None:
    # The room changed hands (or was reused): that recorder would store this call
    # under its own conversation.
    fake = FakeLiveKit()
    fake.recorder("recorder-AJ_ours")
    fake.dispatch("AD_ours", age=300, identity="recorder-AJ_ours")
    fake.recorder("recorder-AJ_theirs")
    theirs = '{"conversation_id": "c-0"}'
    fake.dispatch("AD_theirs", age=300, identity="recorder-AJ_theirs", metadata=theirs)
    result = ensure(fake)
    assert fake.removed == ["recorder-AJ_theirs"]
    assert fake.deleted == ["AD_theirs"]
    assert (result.created, result.deleted) == (1, 1)
    assert [r.metadata for r in fake.created] == [METADATA]


def test_a_recorder_seen_leaving_is_replaced_at_once_not_after_the_grace() -> None:
    # A worker stopped (SIGTERM) leaves its rooms at once: its dispatch is seconds old.
    fake = FakeLiveKit()
    fake.dispatch("AD_left", age=3, identity="recorder-AJ_left")
    fake.dispatch("AD_starting", age=3)
    result = ensure(fake, gone=frozenset({"recorder-AJ_left"}))
    assert fake.deleted == ["AD_left"]
    assert result.created == 1  # AD_starting still counts
