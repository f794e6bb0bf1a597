"""assist/guidance.py: who may be guided, the audit row committed before the order goes out,
the signed order, and the outcome recorded (delivered, or failed with the reason).

LiveKit is faked here (``service.participants`` and ``service.perform_rpc``); the same
path against a real server: tests/e2e/test_guidance_rpc.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import httpx
import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test import Client
from livekit import api

from anyreach_listen.api.errors import ApiError
from anyreach_listen.assist import guidance, signing
from anyreach_listen.livekit import service
from anyreach_listen.models import Conversation, Guidance, GuidanceStatus
from tests.support.world import TEST_LISTEN_SETTINGS, World

SECRET = TEST_LISTEN_SETTINGS["LIVEKIT_API_SECRET"]
KEY = TEST_LISTEN_SETTINGS["LIVEKIT_API_KEY"]
AGENT, STANDARD = api.ParticipantInfo.Kind.AGENT, api.ParticipantInfo.Kind.STANDARD


def person(
    identity: str,
    kind: Any = STANDARD,
    joined_at: int = 1,
    attributes: dict[str, str] | None = None,
    *,
    hidden: bool = False,
) -> Any:
    return api.ParticipantInfo(
        identity=identity,
        kind=kind,
        joined_at=joined_at,
        attributes=attributes or {},
        permission=api.ParticipantPermission(hidden=hidden),
    )


class FakeLiveKit:
    """The room's participants, and its agent answering as the real ones do
    (``signing.receive`` with ``secret``: the order's destination as its identity, the
    test API key); ``answer`` replaces a verified order's answer (given its id), ``fail``
    raises an ``RpcFailed`` instead."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, people: list[Any]) -> None:
        self.people = people
        self.secret = SECRET
        self.sent: list[dict[str, Any]] = []
        self.seen_pending: list[bool] = []
        self.timeouts: list[float] = []  # of the participant lists asked for
        self.applied = signing.RecentIds()
        self.answer: Callable[[str], str] | None = None
        self.fail: service.RpcFailed | None = None

        async def participants(
            room: str, client: Any = None, *, timeout: float = service.REQUEST_TIMEOUT
        ) -> list[Any]:
            self.timeouts.append(timeout)
            return self.people

        monkeypatch.setattr(service, "participants", participants)
        monkeypatch.setattr(service, "perform_rpc", self.perform_rpc)

    def perform_rpc(
        self, room: str, identity: str, method: str, payload: str, *, timeout_ms: int
    ) -> str:
        received = signing.receive(
            payload, room=room, identity=identity, api_secret=self.secret, api_key=KEY,
            seen=self.applied,
        )  # fmt: skip
        self.sent.append(
            {"room": room, "identity": identity, "method": method, "order": received.order,
             "payload": payload, "timeout_ms": timeout_ms}
        )  # fmt: skip
        # Committed before it is sent: outside any transaction, readable, pending.
        gid = signing.unverified_id(payload)
        stored = Guidance.objects.filter(pk=gid, status=GuidanceStatus.PENDING).exists()
        self.seen_pending.append(stored and not connection.in_atomic_block)
        if self.fail is not None:
            raise self.fail
        if self.answer is not None and received.order is not None:
            return self.answer(received.order.id)
        return received.answer


@pytest.fixture
def agent_room(monkeypatch: pytest.MonkeyPatch) -> FakeLiveKit:
    return FakeLiveKit(
        monkeypatch,
        [person("caller"), person("agent-late", AGENT, 9), person("agent-ava", AGENT, 2)],
    )


def give(world: World, call: Conversation | None = None, **kwargs: Any) -> Guidance:
    call = call or world.conversations["in_progress"]
    fields = {"mode": "say", "text": "Offer the refund.", **kwargs}
    return guidance.give(call, audit={"user": world.users["supervisor"]}, **fields)


@pytest.mark.django_db(transaction=True)
def test_the_row_is_committed_pending_then_the_signed_order_delivered(
    world: World, agent_room: FakeLiveKit
) -> None:
    given = give(world, mode="whisper", text="Keep it short.")
    (sent,) = agent_room.sent
    assert agent_room.seen_pending == [True]
    assert sent["room"] == "room-in_progress" and sent["method"] == signing.GUIDANCE_METHOD
    assert sent["identity"] == "agent-ava"  # the agent that joined first
    assert sent["timeout_ms"] == 5000
    assert (sent["order"].id, sent["order"].mode, sent["order"].text) == (
        str(given.pk), "whisper", "Keep it short.",
    )  # fmt: skip
    row = Guidance.objects.get(pk=given.pk)
    assert row.status == GuidanceStatus.DELIVERED and row.reason == ""
    assert row.delivered_at is not None and row.latency_ms is not None
    assert row.user == world.users["supervisor"] and row.agent_identity == "agent-ava"
    assert guidance.for_call(world.conversations["in_progress"]) == [row]


@pytest.mark.django_db(transaction=True)
def test_it_refuses_to_run_inside_an_open_transaction(
    world: World, agent_room: FakeLiveKit
) -> None:
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        give(world)
    # Refused before the order could go out: nothing sent, nothing recorded.
    assert agent_room.sent == []
    assert not Guidance.objects.exists()


@pytest.mark.django_db
def test_inside_a_transaction_under_a_test_case_too(world: World, agent_room: FakeLiveKit) -> None:
    # The test case's own transaction does not count; one opened inside it does.
    assert give(world).status == GuidanceStatus.DELIVERED
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        give(world)
    assert len(agent_room.sent) == 1


@pytest.mark.django_db
def test_a_thousand_emoji_fit_in_one_rpc_payload(world: World, agent_room: FakeLiveKit) -> None:
    text = "\N{GRINNING FACE}" * 1000
    given = give(world, text=text)
    (sent,) = agent_room.sent
    assert len(sent["payload"].encode()) < signing.MAX_PAYLOAD == 15_360
    assert sent["order"].text == text and given.status == GuidanceStatus.DELIVERED


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        ("another secret", "invalid signature: Signature verification failed"),
        ("refused", "not applied: the session is closing"),
        ("refused unread", "invalid signature: Not enough segments"),
        ("rpc", "RpcError 1400: Method not supported at destination"),
        ("timeout", "no answer within 5000 ms"),
        ("other", "acknowledgement of another order"),
    ],
)
def test_an_order_the_agent_did_not_apply_stays_failed_with_why(
    world: World, agent_room: FakeLiveKit, failure: str, reason: str
) -> None:
    if failure == "another secret":  # the agent's refusal names the order it could not verify
        agent_room.secret = "another-secret-of-at-least-thirty-two-chars"
    elif failure == "refused":
        agent_room.answer = lambda order_id: signing.acknowledgement(order_id, reason)
    elif failure == "refused unread":  # an agent that could not even read the id
        agent_room.answer = lambda order_id: signing.acknowledgement("", reason)
    elif failure == "rpc":
        agent_room.fail = service.RpcFailed(reason, 1400)
    elif failure == "timeout":
        agent_room.fail = service.RpcFailed(reason)
    else:
        agent_room.answer = lambda order_id: signing.acknowledgement("another")
    with pytest.raises(ApiError) as refused:
        give(world)
    assert refused.value.code == "guidance_not_delivered" and refused.value.status == 502
    assert reason in refused.value.message
    row = Guidance.objects.get()
    assert (row.status, row.reason, row.delivered_at) == (GuidanceStatus.FAILED, reason, None)


@pytest.mark.django_db
def test_livekit_out_of_reach_finds_no_agent_and_sends_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    timeouts: list[float] = []

    async def unreachable(room: str, client: Any = None, *, timeout: float = 0) -> list[Any]:
        timeouts.append(timeout)
        raise ConnectionRefusedError

    monkeypatch.setattr(service, "participants", unreachable)
    monkeypatch.setattr(service, "perform_rpc", lambda *args, **kwargs: sent.append("rpc"))
    with pytest.raises(ApiError) as refused:
        give(world)
    assert refused.value.code == "agent_not_present" and refused.value.status == 409
    assert "LiveKit could not be asked" in refused.value.message
    assert "ConnectionRefusedError" in refused.value.message
    assert sent == [] and not Guidance.objects.exists()
    assert timeouts == [guidance.LIST_TIMEOUT] and guidance.LIST_TIMEOUT <= 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    "failure",
    [
        api.TwirpError("unavailable", "no healthy upstream", status=503),
        aiohttp.ClientConnectionError("refused"),
        httpx.ConnectError("refused"),
        TimeoutError(),
        OSError("network unreachable"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_each_way_livekit_fails_is_agent_not_present(
    world: World, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    async def failing(room: str, client: Any = None, *, timeout: float = 0) -> list[Any]:
        raise failure

    monkeypatch.setattr(service, "participants", failing)
    with pytest.raises(ApiError) as refused:
        give(world)
    assert refused.value.code == "agent_not_present"
    assert type(failure).__name__ in refused.value.message
    assert not Guidance.objects.exists()


@pytest.mark.django_db
def test_a_programming_error_is_not_taken_for_livekit_away(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(room: str, client: Any = None, *, timeout: float = 0) -> list[Any]:
        raise AttributeError("'NoneType' object has no attribute 'participants'")

    monkeypatch.setattr(service, "participants", broken)
    with pytest.raises(AttributeError):
        give(world)
    assert not Guidance.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("call", "people", "code"),
    [
        ("completed", [person("agent", AGENT)], "conversation_not_active"),
        ("no_room", [person("agent", AGENT)], "agent_not_present"),
        ("in_progress", [person("caller"), person("listener-1")], "agent_not_present"),
        ("in_progress", [person("rec", AGENT, 1, {service.AGENT_NAME_ATTRIBUTE: "rec"})],
         "agent_not_present"),
        # Hidden, or one of our listeners, even with an agent's kind: never the call's agent.
        ("in_progress", [person("agent-shadow", AGENT, hidden=True)], "agent_not_present"),
        ("in_progress", [person("listener-7", AGENT)], "agent_not_present"),
    ],
)  # fmt: skip
def test_no_live_call_or_no_agent_records_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch, settings: Any, call: str, people: list[Any],
    code: str,
) -> None:  # fmt: skip
    settings.ANYREACH_LISTEN = {
        **TEST_LISTEN_SETTINGS,
        "RECORDER": {"AGENT_NAME": "rec", "PER_ROOM": 1, "PORTAL_URL": "http://x"},
    }
    fake = FakeLiveKit(monkeypatch, people)
    with pytest.raises(ApiError) as refused:
        give(world, world.conversations[call])
    assert refused.value.code == code
    assert fake.sent == [] and not Guidance.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("mode", "text"),
    [("shout", "x"), ("say", ""), ("say", "   "), ("say", "x" * 1001), ("say", "a\x00b")],
)
def test_bad_guidance_is_refused_before_anything(
    world: World, agent_room: FakeLiveKit, mode: str, text: str
) -> None:
    with pytest.raises(ApiError) as refused:
        give(world, mode=mode, text=text)
    assert refused.value.code == "invalid_field"
    assert agent_room.sent == [] and not Guidance.objects.exists()


@pytest.mark.django_db
def test_the_longest_guidance_goes_through(world: World, agent_room: FakeLiveKit) -> None:
    assert give(world, text="x" * 1000).status == GuidanceStatus.DELIVERED


@pytest.mark.django_db
def test_each_state_is_published(
    world: World, agent_room: FakeLiveKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    published: list[str] = []
    monkeypatch.setattr(guidance, "publish_guidance", lambda row: published.append(row.status))
    give(world)
    assert published == ["pending", "delivered"]
    agent_room.fail = service.RpcFailed("gone")
    with pytest.raises(ApiError):
        give(world)
    assert published[2:] == ["pending", "failed"]


@pytest.mark.django_db
def test_the_admin_lists_guidance_read_only_with_its_text(
    client: Client, world: World, agent_room: FakeLiveKit
) -> None:
    give(world, text="Mention the loyalty discount.")
    User.objects.create_superuser("root", password="pw")
    client.login(username="root", password="pw")
    listing = client.get("/admin/anyreach_listen/guidance/")
    assert listing.status_code == 200
    assert "Mention the loyalty discount." in listing.content.decode()
    assert client.get("/admin/anyreach_listen/guidance/add/").status_code == 403
    row = Guidance.objects.get()
    change = client.post(f"/admin/anyreach_listen/guidance/{row.pk}/change/", {"text": "edited"})
    assert Guidance.objects.get().text == "Mention the loyalty discount."
    assert change.status_code in (403, 200)


@pytest.mark.django_db
def test_a_hidden_agent_that_joined_first_is_passed_over(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeLiveKit(
        monkeypatch, [person("agent-hidden", AGENT, 1, hidden=True), person("agent-ava", AGENT, 5)]
    )
    assert give(world).agent_identity == "agent-ava"
    assert [sent["identity"] for sent in fake.sent] == ["agent-ava"]


@pytest.mark.django_db
def test_a_livekit_that_does_not_answer_is_given_up_on_after_the_list_timeout(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Hanging:
        class room:  # as LiveKitAPI names it
            @staticmethod
            async def list_participants(request: Any) -> Any:
                await asyncio.sleep(60)

    @contextlib.asynccontextmanager
    async def hanging_api() -> AsyncIterator[Any]:
        yield Hanging()

    monkeypatch.setattr(service, "livekit_api", hanging_api)
    monkeypatch.setattr(guidance, "LIST_TIMEOUT", 0.05)
    started = time.monotonic()
    with pytest.raises(ApiError) as refused:
        give(world)
    assert refused.value.code == "agent_not_present" and "TimeoutError" in refused.value.message
    assert time.monotonic() - started < 5
