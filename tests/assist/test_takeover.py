"""assist/takeover.py: one holder at a time, the audit row committed before the pause goes
out, the token (visible, microphone only, short-lived), every way a takeover ends (the
participant removed, the agent resumed with the lines said meanwhile), and the sweep.

LiveKit is faked as in tests/assist/test_guidance.py (its ``FakeLiveKit``: the agent
answering through ``signing.receive``), plus RoomService's participant removal.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from anyreach_listen import conversations, disclosure, events
from anyreach_listen.access.credentials import issue_api_key, issue_pat
from anyreach_listen.access.roles import Role, Scope
from anyreach_listen.api.errors import ApiError
from anyreach_listen.assist import signing, takeover
from anyreach_listen.listening import revocation
from anyreach_listen.livekit import service
from anyreach_listen.models import (
    Conversation,
    ConversationStatus,
    Membership,
    Takeover,
    TakeoverEnd,
    TranscriptSegment,
)
from tests.assist.test_guidance import AGENT, KEY, SECRET, FakeLiveKit, person
from tests.support.world import TEST_LISTEN_SETTINGS, World

Order = tuple[str, str]  # (mode, text) as the agent verified it


class TakeoverRoom(FakeLiveKit):
    """``FakeLiveKit`` that also removes participants, and keeps one log of what LiveKit
    was asked, in order: ("pause" | "resume", text) and ("remove", identity)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, people: list[Any]) -> None:
        super().__init__(monkeypatch, people)
        self.log: list[tuple[str, str]] = []
        self.committed_first: list[bool] = []  # the row held, outside a transaction, at send
        self.remove_fails = False

        async def remove_participant(room: str, identity: str, client: Any) -> bool:
            self.log.append(("remove", identity))
            if self.remove_fails:
                raise ConnectionRefusedError
            return True

        monkeypatch.setattr(service, "remove_participant", remove_participant)
        # A failed removal is not retried in the background here (no thread outlives a test).
        monkeypatch.setattr(revocation, "RETRY_DELAYS", ())

    def perform_rpc(
        self, room: str, identity: str, method: str, payload: str, *, timeout_ms: int
    ) -> str:
        # FakeLiveKit's agent, without its look at a Guidance row (these ids are not one).
        order_id = signing.unverified_id(payload)
        pk, _, mode = order_id.partition(":")
        held = Takeover.objects.held().filter(pk=pk).exists()
        self.committed_first.append(held and not connection.in_atomic_block)
        self.log.append((mode, json.loads(payload)["text"]))
        received = signing.receive(
            payload, room=room, identity=identity, api_secret=self.secret, api_key=KEY,
            seen=self.applied,
        )  # fmt: skip
        self.sent.append(
            {"room": room, "identity": identity, "method": method, "order": received.order,
             "payload": payload, "timeout_ms": timeout_ms}
        )  # fmt: skip
        if self.fail is not None:
            raise self.fail
        if self.answer is not None and received.order is not None:
            return self.answer(received.order.id)
        return received.answer

    @property
    def orders(self) -> list[Order]:
        return [(mode, text) for mode, text in self.log if mode != "remove"]

    @property
    def removed(self) -> list[str]:
        return [identity for kind, identity in self.log if kind == "remove"]


@pytest.fixture
def room(monkeypatch: pytest.MonkeyPatch) -> TakeoverRoom:
    return TakeoverRoom(monkeypatch, [person("caller"), person("agent-ava", AGENT, 2)])


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every ``takeover.updated``: (event, ended_by)."""
    seen: list[tuple[str, str]] = []
    monkeypatch.setattr(
        takeover, "publish_takeover", lambda row, event: seen.append((event, row.ended_by))
    )
    return seen


@pytest.fixture
def ana(world: World) -> World:
    """The world's supervisor is Ana Silva."""
    user = world.users["supervisor"]
    user.first_name, user.last_name = "Ana", "Silva"
    user.save()
    return world


def call(world: World) -> Conversation:
    return Conversation.objects.get(pk=world.conversations["in_progress"].pk)


def start(world: World, role: str = "supervisor", **audit: Any) -> takeover.TakeoverGrant:
    return takeover.take_over(call(world), audit=audit or {"user": world.users[role]})


def row_of(grant: takeover.TakeoverGrant) -> Takeover:
    return Takeover.objects.get(pk=grant.takeover.pk)


def said(conversation: Conversation, role: str, text: str, at: dt.datetime) -> None:
    position = TranscriptSegment.objects.filter(conversation=conversation).count() + 1
    TranscriptSegment.objects.create(
        conversation=conversation,
        segment_id=f"seg-{position}",
        role=role,
        text=text,
        final=True,
        first_seen_at=at,
        final_at=at,
        position=position,
    )


# --- starting ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_row_is_committed_then_the_agent_pauses_then_the_token_is_minted(
    ana: World, room: TakeoverRoom, published: list[tuple[str, str]]
) -> None:
    grant = start(ana)
    row = row_of(grant)
    assert room.orders == [("pause", "")]
    assert room.committed_first == [True]  # durable: on record before anything went out
    (sent,) = room.sent
    assert sent["identity"] == "agent-ava" and sent["method"] == signing.GUIDANCE_METHOD
    assert sent["order"].id == f"{row.pk}:pause" and sent["timeout_ms"] == 5000
    assert row.ended_at is None and row.agent_identity == "agent-ava"
    assert row.user == ana.users["supervisor"] and row.identity == f"supervisor-{row.pk}"
    assert grant.renewed is False and grant.expires_at == row.expires_at
    assert grant.as_response() == {
        "id": str(row.pk),
        "url": TEST_LISTEN_SETTINGS["LIVEKIT_URL"],
        "token": grant.token,
        "room_name": "room-in_progress",
        "expires_at": row.expires_at.isoformat().replace("+00:00", "Z"),
    }
    assert published == [("started", "")]
    assert takeover.held(call(ana)) == row


@pytest.mark.django_db
def test_the_token_is_a_visible_microphone_only_participant_for_at_most_the_ttl(
    ana: World, room: TakeoverRoom, settings: Any
) -> None:
    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, "TAKEOVER_TOKEN_TTL": 120}
    grant = start(ana)
    claims = jwt.decode(grant.token, SECRET, algorithms=["HS256"], options={"verify_aud": False})
    assert claims["iss"] == KEY
    assert claims["sub"] == f"supervisor-{grant.takeover.pk}"
    assert claims["sub"].startswith(takeover.IDENTITY_PREFIX)
    assert claims["name"] == "Ana Silva"
    assert json.loads(claims["metadata"]) == {"takeover": True}
    assert claims["exp"] - claims["nbf"] <= 120
    assert (
        claims["exp"]
        == int(grant.expires_at.timestamp())
        == int(row_of(grant).expires_at.timestamp())
    )
    video = claims["video"]
    assert video["roomJoin"] is True and video["room"] == "room-in_progress"
    assert video["canPublish"] is True and video["canSubscribe"] is True
    assert video["canPublishSources"] == ["microphone"]
    assert video["canPublishData"] is False and video["canUpdateOwnMetadata"] is False
    assert video.get("hidden", False) is False
    # Nothing more than a participant: no admin, recorder or agent powers.
    assert not {"roomAdmin", "roomCreate", "roomList", "roomRecord", "agent"} & set(video)


@pytest.mark.django_db
def test_an_api_key_is_named_by_its_name_in_the_call_and_by_its_label_on_pages(
    world: World, room: TakeoverRoom
) -> None:
    key, _ = issue_api_key(world.org, "wallboard", [Scope.TAKE_OVER])
    grant = start(world, api_key=key)
    claims = jwt.decode(grant.token, options={"verify_signature": False})
    # The caller's app and the agent never see the key's id; staff pages do, as presence.
    assert claims["name"] == "wallboard" == row_of(grant).participant_name
    assert row_of(grant).display_name == f"API key {key}"


@pytest.mark.django_db
def test_the_holder_renews_with_a_later_expiry_and_no_second_pause(
    ana: World, room: TakeoverRoom, published: list[tuple[str, str]], settings: Any
) -> None:
    first = start(ana)
    Takeover.objects.filter(pk=first.takeover.pk).update(
        expires_at=timezone.now() + dt.timedelta(seconds=10)
    )
    # The same person, from another door (their PAT), is the same holder.
    pat, _ = issue_pat(ana.users["supervisor"], "mine", [Scope.TAKE_OVER])
    again = start(ana, user=ana.users["supervisor"], personal_access_token=pat)
    assert again.renewed is True and again.takeover.pk == first.takeover.pk
    assert again.expires_at > timezone.now() + dt.timedelta(seconds=200)
    assert row_of(again).expires_at == again.expires_at
    assert room.orders == [("pause", "")]  # the agent is paused already
    assert published == [("started", ""), ("renewed", "")]
    assert jwt.decode(again.token, options={"verify_signature": False})["sub"] == (
        row_of(first).identity
    )


@pytest.mark.django_db
def test_a_second_holder_is_refused_naming_the_first(
    ana: World, room: TakeoverRoom, published: list[tuple[str, str]]
) -> None:
    grant = start(ana)
    Takeover.objects.filter(pk=grant.takeover.pk).update(
        started_at=dt.datetime(2026, 12, 7, 10, 2, 30, tzinfo=dt.UTC)
    )
    key, _ = issue_api_key(ana.org, "bot", [Scope.TAKE_OVER])
    for audit in ({"user": ana.users["admin"]}, {"api_key": key}):
        with pytest.raises(ApiError) as refused:
            start(ana, **audit)
        assert refused.value.code == "already_taken_over" and refused.value.status == 409
        assert refused.value.message == "Taken over by Ana Silva since 10:02 UTC."
    assert room.orders == [("pause", "")] and Takeover.objects.count() == 1
    assert published == [("started", "")]


@pytest.mark.django_db
def test_an_api_key_does_not_renew_a_persons_takeover(world: World, room: TakeoverRoom) -> None:
    key, _ = issue_api_key(world.org, "bot", [Scope.TAKE_OVER])
    start(world, api_key=key)
    with pytest.raises(ApiError) as refused:
        start(world)
    assert refused.value.code == "already_taken_over"
    assert f"Taken over by API key {key} since" in refused.value.message


@pytest.mark.django_db
def test_a_racing_start_the_lock_missed_is_refused_by_the_constraint(
    ana: World, room: TakeoverRoom, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another request's row, committed after this one looked (PostgreSQL's row lock
    # serializes them; the one_takeover_per_call index decides whatever happens).
    Takeover.objects.create(
        conversation=call(ana),
        user=ana.users["supervisor"],
        identity=f"supervisor-{uuid.uuid4()}",
        agent_identity="agent-ava",
        expires_at=timezone.now() + dt.timedelta(minutes=5),
    )
    monkeypatch.setattr(takeover, "_held_locked", lambda conversation: None)
    with pytest.raises(ApiError) as refused:
        start(ana, "admin")
    assert refused.value.code == "already_taken_over"
    assert refused.value.message.startswith("Taken over by Ana Silva since ")
    assert Takeover.objects.count() == 1 and room.orders == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("conversation", "people", "code"),
    [
        ("completed", [person("agent", AGENT)], "conversation_not_active"),
        ("no_room", [person("agent", AGENT)], "agent_not_present"),
        ("in_progress", [person("caller"), person("listener-1")], "agent_not_present"),
        ("in_progress", [person("agent-shadow", AGENT, hidden=True)], "agent_not_present"),
    ],
)
def test_no_live_call_or_no_agent_records_nothing(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    conversation: str,
    people: list[Any],
    code: str,
) -> None:
    fake = TakeoverRoom(monkeypatch, people)
    with pytest.raises(ApiError) as refused:
        takeover.take_over(
            world.conversations[conversation], audit={"user": world.users["supervisor"]}
        )
    assert refused.value.code == code and refused.value.status == 409
    assert fake.log == [] and not Takeover.objects.exists()


@pytest.mark.django_db
def test_livekit_out_of_reach_is_agent_not_present(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreachable(room: str, client: Any = None, *, timeout: float = 0) -> list[Any]:
        raise ConnectionRefusedError

    monkeypatch.setattr(service, "participants", unreachable)
    with pytest.raises(ApiError) as refused:
        start(world)
    assert refused.value.code == "agent_not_present"
    assert "ConnectionRefusedError" in refused.value.message
    assert not Takeover.objects.exists()


@pytest.mark.django_db
def test_a_call_that_ended_meanwhile_is_not_taken_over(world: World, room: TakeoverRoom) -> None:
    stale = call(world)  # read while live
    Conversation.objects.filter(pk=stale.pk).update(status=ConversationStatus.COMPLETED)
    with pytest.raises(ApiError) as refused:
        takeover.take_over(stale, audit={"user": world.users["supervisor"]})
    assert refused.value.code == "conversation_not_active"
    assert not Takeover.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_it_refuses_to_run_inside_an_open_transaction(world: World, room: TakeoverRoom) -> None:
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        start(world)
    assert room.log == [] and not Takeover.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        ("refused", "not applied: this agent cannot be taken over"),
        ("timeout", "no answer within 5000 ms"),
        ("rpc", "RpcError 1400: Method not supported at destination"),
    ],
)
def test_a_pause_not_confirmed_is_502_and_stays_on_record_not_paused(
    ana: World,
    room: TakeoverRoom,
    published: list[tuple[str, str]],
    failure: str,
    reason: str,
) -> None:
    if failure == "refused":
        room.answer = lambda order_id: signing.acknowledgement(order_id, reason)
    else:
        room.fail = service.RpcFailed(reason, 1400 if failure == "rpc" else None)
    with pytest.raises(ApiError) as refused:
        start(ana)
    assert refused.value.code == "takeover_not_confirmed" and refused.value.status == 502
    assert reason in refused.value.message
    row = Takeover.objects.get()
    assert row.ended_by == TakeoverEnd.NOT_PAUSED and row.ended_at is not None
    assert row.resume_error == f"Pause not confirmed: {reason}"
    # A resume with nothing to add all the same (a pause that landed late is undone: the
    # agent answers it, or the sweep sends it again); no token was out, nobody to remove.
    assert room.orders == [("pause", ""), ("resume", "")]
    assert row.resumed_at is None  # this agent refuses (or never gets) every order
    assert published[0] == ("ended", TakeoverEnd.NOT_PAUSED)
    assert takeover.held(call(ana)) is None
    # Nothing is held: the call can be taken over again.
    room.answer = room.fail = None
    assert start(ana).takeover.pk != row.pk


# --- handing back --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_hand_back_removes_the_supervisor_then_resumes_with_what_was_said(
    ana: World, room: TakeoverRoom, published: list[tuple[str, str]]
) -> None:
    conversation = call(ana)
    started = timezone.now()
    said(conversation, "agent", "Let me check that for you.", started - dt.timedelta(seconds=5))
    grant = start(ana)
    now = timezone.now()
    said(conversation, "user", "I was charged twice.", now)
    said(conversation, "user", "  It was on   Monday. ", now + dt.timedelta(milliseconds=1))
    ended = takeover.hand_back(conversation)
    assert ended.pk == grant.takeover.pk and ended.ended_by == TakeoverEnd.HANDED_BACK
    row = row_of(grant)
    assert row.ended_at is not None and row.resumed_at is not None and row.resume_error == ""
    assert ended.resumed_at == row.resumed_at  # the answer is the row as it ends
    assert [kind for kind, _ in room.log] == ["pause", "remove", "resume"]
    assert room.removed == [row.identity]
    assert room.sent[-1]["order"].id == f"{row.pk}:resume"
    assert room.sent[-1]["identity"] == "agent-ava"
    text = room.orders[-1][1]
    header, *lines = text.splitlines()
    assert header.startswith("A supervisor, Ana Silva, took this call over from you for ")
    assert lines == [
        "What was said meanwhile:",
        "Caller: I was charged twice.",
        "Caller: It was on Monday.",
    ]
    assert published == [("started", ""), ("ended", "handed_back"), ("resumed", "handed_back")]
    assert takeover.held(conversation) is None


@pytest.mark.django_db
def test_handing_back_what_nobody_holds_is_404(world: World, room: TakeoverRoom) -> None:
    with pytest.raises(ApiError) as refused:
        takeover.hand_back(call(world))
    assert refused.value.code == "takeover_not_found" and refused.value.status == 404
    start(world)
    takeover.hand_back(call(world))
    with pytest.raises(ApiError) as again:
        takeover.hand_back(call(world))
    assert again.value.code == "takeover_not_found"
    assert [kind for kind, _ in room.log] == ["pause", "remove", "resume"]


@pytest.mark.django_db
def test_a_resume_the_agent_did_not_confirm_is_recorded(
    world: World, room: TakeoverRoom, published: list[tuple[str, str]]
) -> None:
    grant = start(world)
    room.remove_fails = True  # logged; the sweep takes it out later
    room.fail = service.RpcFailed("no answer within 5000 ms")
    ended = takeover.hand_back(call(world))
    row = row_of(grant)
    assert row.ended_by == TakeoverEnd.HANDED_BACK and row.resumed_at is None
    assert row.resume_error == "no answer within 5000 ms" == ended.resume_error
    assert published[-1] == ("resumed", "handed_back")


@pytest.mark.django_db
def test_a_failed_resume_is_sent_again_by_the_sweep_for_a_while(
    world: World, room: TakeoverRoom
) -> None:
    grant = start(world)
    room.fail = service.RpcFailed("no answer within 5000 ms")
    ended = takeover.hand_back(call(world))
    assert ended.ended_at is not None and row_of(grant).resumed_at is None
    resumes = lambda: [mode for mode, _ in room.orders].count("resume")  # noqa: E731
    # Not before the ender had its go; then again while it fails, for five minutes.
    takeover.sweep(now=ended.ended_at + dt.timedelta(seconds=5))
    assert resumes() == 1
    takeover.sweep(now=ended.ended_at + dt.timedelta(seconds=11))
    assert resumes() == 2 and row_of(grant).resumed_at is None
    takeover.sweep(now=ended.ended_at + dt.timedelta(minutes=6))
    assert resumes() == 2
    # The agent answers: resumed, and never sent again.
    room.fail = None
    takeover.sweep(now=ended.ended_at + dt.timedelta(seconds=40))
    assert resumes() == 3 and row_of(grant).resumed_at is not None
    takeover.sweep(now=ended.ended_at + dt.timedelta(seconds=50))
    assert resumes() == 3


@pytest.mark.django_db
def test_no_token_before_the_agent_confirmed_its_pause(ana: World, room: TakeoverRoom) -> None:
    early: list[str] = []

    def answer(order_id: str) -> str:
        if order_id.endswith(":pause"):  # the holder asks again while the pause is out
            with pytest.raises(ApiError) as refused:
                start(ana)
            early.append(refused.value.code)
        return signing.acknowledgement(order_id)

    room.answer = answer
    grant = start(ana)
    assert early == ["already_taken_over"]
    row = row_of(grant)
    assert row.paused_at is not None and row.paused_at <= row.expires_at


@pytest.mark.django_db
def test_renewing_one_that_ended_is_404_never_a_new_takeover(
    ana: World, room: TakeoverRoom
) -> None:
    grant = start(ana)
    takeover.hand_back(call(ana))
    with pytest.raises(ApiError) as refused:
        takeover.take_over(
            call(ana), audit={"user": ana.users["supervisor"]}, renewing=grant.takeover.pk
        )
    assert refused.value.code == "takeover_not_found"
    assert Takeover.objects.count() == 1
    assert [mode for mode, _ in room.orders] == ["pause", "resume"]


@pytest.mark.django_db
def test_a_hand_back_of_another_takeover_leaves_the_held_one(
    world: World, room: TakeoverRoom
) -> None:
    grant = start(world)
    with pytest.raises(ApiError) as refused:
        takeover.hand_back(call(world), takeover_id=uuid.uuid4())
    assert refused.value.code == "takeover_not_found"
    assert takeover.held(call(world)) == grant.takeover


@pytest.mark.django_db
def test_the_history_lists_every_takeover_oldest_first(world: World, room: TakeoverRoom) -> None:
    first = start(world).takeover
    takeover.hand_back(call(world))
    second = start(world, "admin").takeover
    history = takeover.for_call(call(world))
    assert [t.pk for t in history] == [first.pk, second.pk]
    assert [t.display_name for t in history] == ["supervisor", "admin"]
    assert takeover.held(call(world)).pk == second.pk  # type: ignore[union-attr]
    assert takeover.for_call(world.conversations["other_team"]) == []


# --- the resume's text -------------------------------------------------------------------------


def _row(world: World, seconds: int) -> Takeover:
    begun = timezone.now() - dt.timedelta(seconds=seconds)
    return Takeover.objects.create(
        conversation=call(world),
        user=world.users["supervisor"],
        identity=f"supervisor-{uuid.uuid4()}",
        agent_identity="agent-ava",
        started_at=begun,
        expires_at=begun + dt.timedelta(minutes=5),
        ended_at=begun + dt.timedelta(seconds=seconds),
    )


@pytest.mark.django_db
def test_the_context_says_who_and_how_long_even_with_nothing_said(world: World) -> None:
    row = _row(world, 125)
    assert takeover.resume_context(row) == (
        "A supervisor, supervisor, took this call over from you for 2 min 5 s and spoke "
        "with the caller; you have it back now. The supervisor's own words were not "
        "transcribed.\nNothing was transcribed meanwhile."
    )


@pytest.mark.django_db
def test_the_context_leaves_the_oldest_lines_out_to_fit(world: World) -> None:
    row = _row(world, 600)
    for n in range(400):
        who = "user" if n % 2 else "agent"
        said(call(world), who, f"line {n} " + "é" * 40, row.started_at + dt.timedelta(seconds=1))
    assert row.ended_at is not None
    said(call(world), "user", "after the hand-back", row.ended_at + dt.timedelta(seconds=1))
    text = takeover.resume_context(row)
    assert len(text.encode()) <= signing.MAX_CONTEXT_BYTES
    assert signing.text_fits("resume", text)
    lines = text.splitlines()
    assert lines[1] == "What was said meanwhile:"
    left_out = int(lines[2].removeprefix("(").split()[0])
    assert lines[2] == f"({left_out} earlier lines left out.)" and 0 < left_out < 400
    assert lines[3].startswith(f"{'Caller' if left_out % 2 else 'Agent'}: line {left_out} ")
    assert lines[-1] == "Caller: line 399 " + "é" * 40
    assert len(lines) == 3 + 400 - left_out
    assert "after the hand-back" not in text


@pytest.mark.django_db
def test_one_line_longer_than_the_budget_keeps_its_end(world: World) -> None:
    row = _row(world, 60)
    said(call(world), "user", "start " + "x" * 20_000 + " the end", row.started_at)
    text = takeover.resume_context(row)
    assert len(text.encode()) <= signing.MAX_CONTEXT_BYTES
    assert text.endswith("x the end") and "(1 earlier lines left out.)" in text


# --- every way it ends ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("room_closed", [False, True])
def test_the_call_ending_ends_it_without_a_resume(
    world: World,
    room: TakeoverRoom,
    published: list[tuple[str, str]],
    django_capture_on_commit_callbacks: Callable[..., Any],
    room_closed: bool,
) -> None:
    grant = start(world)
    with django_capture_on_commit_callbacks(execute=True):
        conversations.finish(call(world), by="api", room_closed=room_closed)
    row = row_of(grant)
    assert row.ended_by == TakeoverEnd.CALL_ENDED and row.resumed_at is None
    # A closed room took everyone with it; otherwise the supervisor is taken out.
    assert room.removed == ([] if room_closed else [row.identity])
    assert room.orders == [("pause", "")]
    assert published[-1] == ("ended", TakeoverEnd.CALL_ENDED)


@pytest.mark.django_db
def test_losing_the_room_ends_it_and_takes_the_supervisor_out_of_that_room(
    world: World,
    room: TakeoverRoom,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    grant = start(world)
    removed_from: list[tuple[str, str]] = []

    async def remove_participant(room_name: str, identity: str, client: Any) -> bool:
        removed_from.append((room_name, identity))
        return True

    monkeypatch.setattr(service, "remove_participant", remove_participant)
    with django_capture_on_commit_callbacks(execute=True):
        conversations.lose_room(call(world), at=timezone.now())
    row = row_of(grant)
    assert row.ended_by == TakeoverEnd.CALL_ENDED and row.resumed_at is None
    # The call no longer names the room: the one it was in, noted as it ended.
    assert removed_from == [("room-in_progress", row.identity)]
    assert call(world).livekit_room is None


def _held(world: World, **fields: Any) -> Takeover:
    now = timezone.now()
    values: dict[str, Any] = {
        "conversation": call(world),
        "user": world.users["supervisor"],
        "identity": f"supervisor-{uuid.uuid4()}",
        "agent_identity": "agent-ava",
        "started_at": now,
        "expires_at": now + dt.timedelta(minutes=5),
        "joined_at": now,
        **fields,
    }
    return Takeover.objects.create(**values)


@pytest.mark.django_db
def test_the_sweep_ends_one_whose_supervisor_left_more_than_30_s_ago(
    world: World, room: TakeoverRoom, published: list[tuple[str, str]]
) -> None:
    left = timezone.now()
    row = _held(world, left_at=left)
    assert takeover.LEFT_GRACE == 30
    assert takeover.sweep(now=left + dt.timedelta(seconds=29)) == 0
    assert takeover.sweep(now=left + dt.timedelta(seconds=31)) == 1
    row.refresh_from_db()
    assert row.ended_by == TakeoverEnd.LEFT and row.resumed_at is not None
    assert [kind for kind, _ in room.log] == ["remove", "resume"]
    assert published == [("ended", "left"), ("resumed", "left")]
    assert takeover.sweep(now=left + dt.timedelta(seconds=60)) == 0


@pytest.mark.django_db
def test_the_sweep_ends_one_whose_token_expired_unrenewed(world: World, room: TakeoverRoom) -> None:
    row = _held(world)
    assert takeover.sweep(now=row.expires_at - dt.timedelta(seconds=1)) == 0
    assert takeover.sweep(now=row.expires_at) == 1
    row.refresh_from_db()
    assert row.ended_by == TakeoverEnd.EXPIRED and row.ended_at == row.expires_at
    assert row.resumed_at is not None and [k for k, _ in room.log] == ["remove", "resume"]


@pytest.mark.django_db
@pytest.mark.parametrize("in_room", [False, True])
def test_a_supervisor_no_webhook_saw_join_is_looked_for_in_the_room(
    world: World, room: TakeoverRoom, in_room: bool
) -> None:
    row = _held(world, joined_at=None)
    if in_room:
        room.people.append(person(row.identity))
    assert takeover.sweep(now=row.started_at + dt.timedelta(seconds=29)) == 0
    ended = takeover.sweep(now=row.started_at + dt.timedelta(seconds=31))
    row.refresh_from_db()
    assert ended == (0 if in_room else 1)
    assert row.ended_by == ("" if in_room else TakeoverEnd.LEFT)


@pytest.mark.django_db
def test_the_sweep_ends_what_changes_behind_the_signals_backs(
    world: World, room: TakeoverRoom
) -> None:
    lost = _held(world)
    # A bulk update fires no signal: the sweep's re-check is the net.
    Membership.objects.filter(user=world.users["supervisor"]).update(role=Role.QA)
    other = _held(
        world,
        conversation=world.conversations["other_team"],
        user=world.users["admin"],
    )
    Conversation.objects.filter(pk=other.conversation_id).update(
        status=ConversationStatus.COMPLETED
    )
    assert takeover.sweep() == 2
    lost.refresh_from_db()
    other.refresh_from_db()
    assert lost.ended_by == TakeoverEnd.ACCESS_LOST and lost.resumed_at is not None
    assert other.ended_by == TakeoverEnd.CALL_ENDED and other.resumed_at is None
    assert room.orders == [("resume", takeover.resume_context(lost))]


@pytest.mark.django_db
def test_the_sweep_takes_ended_takeovers_supervisors_out_of_live_rooms(
    world: World, room: TakeoverRoom
) -> None:
    gone = _held(world, ended_at=timezone.now(), ended_by=TakeoverEnd.HANDED_BACK)
    current = _held(world)
    unknown = f"supervisor-{uuid.uuid4()}"  # e.g. of a call deleted since
    people = [gone.identity, current.identity, unknown, "supervisor-of-the-host"]
    room.people += [person(identity) for identity in people]
    assert takeover.sweep() == 0
    # Ours that holds nothing here goes; the one holding the call, and a host's own
    # participant that merely starts alike, stay.
    assert room.removed == [gone.identity, unknown]


@pytest.mark.django_db
def test_sweep_listeners_hands_back_and_says_how_many(
    world: World, room: TakeoverRoom, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anyreach_listen.management.commands import sweep_listeners

    calls: list[dt.datetime | None] = []

    def sweep(now: dt.datetime | None = None) -> int:
        calls.append(now)
        return 2

    monkeypatch.setattr(sweep_listeners.takeover, "sweep", sweep)
    monkeypatch.setattr(sweep_listeners.reconciliation, "reconcile", lambda: _Nothing())
    monkeypatch.setattr(sweep_listeners, "sweep", lambda: _Nothing(revoked=0, removed=0))
    monkeypatch.setattr(sweep_listeners.recorder_dispatch, "sweep", lambda: 0)
    out = io.StringIO()
    call_command("sweep_listeners", stdout=out)
    assert "ended 2 takeover(s)" in out.getvalue() and calls == [None]


class _Nothing:
    def __init__(self, **fields: int) -> None:
        self.checked, self.closed, self.lost = True, 0, 0
        self.__dict__.update(fields)


# --- the holder's right ---------------------------------------------------------------------------


@pytest.fixture
def rows(world: World) -> Iterator[Callable[..., Takeover]]:
    """An unsaved takeover of the live Support call by ``audit``'s holder (nobody: none)."""

    def make(**audit: Any) -> Takeover:
        fields = {"conversation": call(world), "credential_label": "", **audit}
        if "credential_label" not in audit:
            fields["credential_label"] = disclosure.credential_label(audit)
        return Takeover(agent_identity="agent-ava", expires_at=timezone.now(), **fields)

    yield make


@pytest.mark.django_db
def test_an_api_keys_right_is_its_scope_in_the_calls_organization(
    world: World, rows: Callable[..., Takeover]
) -> None:
    key, _ = issue_api_key(world.org, "bot", [Scope.TAKE_OVER])
    assert takeover.holder_refusal(rows(api_key=key)) is None
    guide_only, _ = issue_api_key(world.org, "g", [Scope.GUIDE, Scope.MANAGE])
    assert takeover.holder_refusal(rows(api_key=guide_only)) == takeover.NOT_ALLOWED
    elsewhere, _ = issue_api_key(world.other_org, "x", [Scope.TAKE_OVER])
    assert takeover.holder_refusal(rows(api_key=elsewhere)) == takeover.NOT_ALLOWED
    key.revoked_at = timezone.now()
    key.save()
    assert takeover.holder_refusal(rows(api_key=key)) == takeover.CREDENTIAL_GONE
    deleted = rows(credential_label="API key gone (ak_x_…)")
    assert takeover.holder_refusal(deleted) == takeover.CREDENTIAL_GONE


@pytest.mark.django_db
def test_a_persons_right_is_their_role_on_the_call_and_their_pat_within_it(
    world: World, rows: Callable[..., Takeover]
) -> None:
    supervisor = world.users["supervisor"]
    assert takeover.holder_refusal(rows(user=supervisor)) is None
    assert takeover.holder_refusal(rows(user=world.users["qa"])) == takeover.NOT_ALLOWED
    # A call of a team the supervisor is not in.
    foreign = rows(user=supervisor, conversation=world.conversations["other_team"])
    assert takeover.holder_refusal(foreign) == takeover.NOT_ALLOWED
    pat, _ = issue_pat(supervisor, "t", [Scope.TAKE_OVER])
    assert takeover.holder_refusal(rows(user=supervisor, personal_access_token=pat)) is None
    read, _ = issue_pat(supervisor, "r", [Scope.READ])
    assert takeover.holder_refusal(rows(user=supervisor, personal_access_token=read)) == (
        takeover.NOT_ALLOWED
    )
    # The QA role's PAT asking for take_over gets none of it.
    qa_pat, _ = issue_pat(world.users["qa"], "t", [Scope.TAKE_OVER])
    qa = rows(user=world.users["qa"], personal_access_token=qa_pat)
    assert takeover.holder_refusal(qa) == takeover.NOT_ALLOWED
    supervisor.is_active = False
    supervisor.save()
    assert takeover.holder_refusal(rows(user=supervisor)) == takeover.HOLDER_GONE
    assert takeover.holder_refusal(rows()) == takeover.HOLDER_GONE  # the person was deleted


# --- the event ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_takeover_updated_carries_the_state_to_the_callers_organization(
    ana: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        events, "_send_on_commit", lambda group, shape: sent.append((group, shape.as_json()))
    )
    row = _held(ana, left_at=timezone.now())
    events.publish_takeover(row, "left")
    ((group, message),) = sent
    assert group == events.organization_group(ana.org.pk)
    assert message["type"] == events.TAKEOVER_UPDATED == "takeover.updated"
    assert message["event"] == "left" and "left" in events.TAKEOVER_EVENTS
    assert message["conversation_id"] == str(row.conversation_id)
    assert message["takeover"] == {
        "id": str(row.pk),
        "holder": "Ana Silva",
        "started_at": row.started_at.isoformat().replace("+00:00", "Z"),
        "expires_at": row.expires_at.isoformat().replace("+00:00", "Z"),
        "joined_at": row.joined_at.isoformat().replace("+00:00", "Z"),  # type: ignore[union-attr]
        "ended_at": None,
        "ended_by": None,
        "resumed_at": None,
        "resume_error": "",
    }
