"""assist/guidance.py: who may be guided, the audit row committed before the order goes out,
the signed order, and the outcome recorded (delivered, or failed with the reason).

LiveKit is faked here (``service.participants`` and ``service.perform_rpc``); the same
path against a real server: tests/e2e/test_guidance_rpc.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
AGENT, STANDARD = api.ParticipantInfo.Kind.AGENT, api.ParticipantInfo.Kind.STANDARD


def person(
    identity: str,
    kind: Any = STANDARD,
    joined_at: int = 1,
    attributes: dict[str, str] | None = None,
) -> Any:
    return api.ParticipantInfo(
        identity=identity, kind=kind, joined_at=joined_at, attributes=attributes or {}
    )


class FakeLiveKit:
    """The room's participants, and what the agent answers (``answer``: the order's id →
    its answer; ``fail``: an ``RpcFailed`` instead)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, people: list[Any]) -> None:
        self.people = people
        self.sent: list[dict[str, Any]] = []
        self.seen_pending: list[bool] = []
        self.answer: Callable[[str], str] = signing.acknowledgement
        self.fail: service.RpcFailed | None = None

        async def participants(room: str) -> list[Any]:
            return self.people

        monkeypatch.setattr(service, "participants", participants)
        monkeypatch.setattr(service, "perform_rpc", self.perform_rpc)

    def perform_rpc(
        self, room: str, identity: str, method: str, payload: str, *, timeout_ms: int
    ) -> str:
        order = signing.verify(payload, room=room, api_secret=SECRET)
        self.sent.append(
            {"room": room, "identity": identity, "method": method, "order": order,
             "timeout_ms": timeout_ms}
        )  # fmt: skip
        # Committed before it is sent: outside any transaction, readable, pending.
        stored = Guidance.objects.filter(pk=order.id, status=GuidanceStatus.PENDING).exists()
        self.seen_pending.append(stored and not connection.in_atomic_block)
        if self.fail is not None:
            raise self.fail
        return self.answer(order.id)


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
    with pytest.raises(RuntimeError), transaction.atomic():
        give(world)
    assert agent_room.sent == [] and not Guidance.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        ("refused", "signed for another room"),
        ("rpc", "RpcError 1400: Method not supported at destination"),
        ("timeout", "no answer within 5000 ms"),
        ("other", "acknowledgement of another order"),
    ],
)
def test_an_order_the_agent_did_not_apply_stays_failed_with_why(
    world: World, agent_room: FakeLiveKit, failure: str, reason: str
) -> None:
    if failure == "refused":
        agent_room.answer = lambda order_id: signing.acknowledgement(order_id, reason)
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

    async def unreachable(room: str) -> list[Any]:
        raise ConnectionRefusedError

    monkeypatch.setattr(service, "participants", unreachable)
    monkeypatch.setattr(service, "perform_rpc", lambda *args, **kwargs: sent.append("rpc"))
    with pytest.raises(ApiError) as refused:
        give(world)
    assert refused.value.code == "agent_not_present"
    assert "ConnectionRefusedError" in refused.value.message
    assert sent == [] and not Guidance.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("call", "people", "code"),
    [
        ("completed", [person("agent", AGENT)], "conversation_not_active"),
        ("no_room", [person("agent", AGENT)], "agent_not_present"),
        ("in_progress", [person("caller"), person("listener-1")], "agent_not_present"),
        ("in_progress", [person("rec", AGENT, 1, {service.AGENT_NAME_ATTRIBUTE: "rec"})],
         "agent_not_present"),
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
