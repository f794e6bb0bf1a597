"""LiveKit webhooks: signatures, state changes, idempotency, failed deliveries (no server)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.db import OperationalError
from django.test import Client
from livekit import api

from anyreach_listen import conversations
from anyreach_listen.api.errors import Errors
from anyreach_listen.conf import listen_settings
from anyreach_listen.events import organization_group
from anyreach_listen.listening import sessions
from anyreach_listen.listening.minting import grant_listen
from anyreach_listen.livekit import webhooks
from anyreach_listen.models import Conversation, ConversationStatus, ListenSession, ListenVia
from tests.support.livekit import deliver_webhook, sign_webhook
from tests.support.livekit import webhook_event as event
from tests.support.world import World

URL = "/livekit/webhook"


post = deliver_webhook


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []
    # The conversations service publishes conversation changes, sessions listener ones.
    monkeypatch.setattr(
        conversations, "publish_conversation", lambda c, e: calls.append(("conversation", e))
    )
    monkeypatch.setattr(sessions, "publish_listener", lambda s, e: calls.append(("listener", e)))
    return calls


def test_room_started_and_finished_move_the_conversation(
    world: World, client: Client, published: list[tuple[str, str]]
) -> None:
    conversation = world.conversations[ConversationStatus.TRIGGERED]
    room = conversation.livekit_room or ""
    started = int(time.time()) - 30

    response = post(client, event("room_started", room, created_at=started))
    assert response.status_code == 200
    assert response.json()["outcome"] == "room_started"
    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.IN_PROGRESS
    assert conversation.started_at is not None
    assert int(conversation.started_at.timestamp()) == started

    response = post(client, event("room_finished", room))
    assert response.json()["outcome"] == "room_finished"
    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.COMPLETED
    assert conversation.ended_at is not None
    assert conversation.metadata["ended_by"] == "room_finished"
    assert published == [("conversation", "room_started"), ("conversation", "room_finished")]


def test_room_finished_does_not_touch_a_finished_conversation(world: World, client: Client) -> None:
    conversation = world.conversations[ConversationStatus.FAILED]
    response = post(client, event("room_finished", conversation.livekit_room or ""))
    assert response.json()["outcome"] == "unchanged"
    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.FAILED
    assert conversation.ended_at is None


def test_duplicate_delivery_is_idempotent(
    world: World, client: Client, published: list[tuple[str, str]]
) -> None:
    conversation = world.conversations[ConversationStatus.IN_PROGRESS]
    body = event("room_finished", conversation.livekit_room or "")
    assert post(client, body).json()["outcome"] == "room_finished"
    conversation.refresh_from_db()
    ended_at = conversation.ended_at

    # The very same delivery again, and the same event under a new id: no change.
    assert post(client, body).json()["outcome"] == "duplicate"
    again = event("room_finished", conversation.livekit_room or "", created_at=int(time.time()) + 5)
    assert post(client, again).json()["outcome"] == "unchanged"
    conversation.refresh_from_db()
    assert conversation.ended_at == ended_at
    assert published == [("conversation", "room_finished")]


def test_bad_signature_is_rejected_and_logged_without_the_token(
    world: World, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    conversation = world.conversations[ConversationStatus.TRIGGERED]
    body = event("room_started", conversation.livekit_room or "")
    forged = sign_webhook(body, listen_settings.LIVEKIT_API_KEY, "not-the-secret-" + "x" * 32)
    with caplog.at_level(logging.WARNING, logger="anyreach_listen.livekit.webhooks"):
        response = post(client, body, auth=forged)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    assert "Rejected LiveKit webhook" in caplog.text
    assert forged not in caplog.text
    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.TRIGGERED


@pytest.mark.parametrize("auth", ["", "Bearer x", "not-a-jwt"])
def test_missing_or_malformed_authorization_is_401(world: World, client: Client, auth: str) -> None:
    body = event("room_started", "room-in_progress")
    response = post(client, body, auth=auth)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"


def test_body_tampered_after_signing_is_401(world: World, client: Client) -> None:
    body = event("room_finished", "room-in_progress")
    auth = sign_webhook(body, listen_settings.LIVEKIT_API_KEY, listen_settings.LIVEKIT_API_SECRET)
    tampered = body.replace("room-in_progress", "room-triggered")
    response = post(client, tampered, auth=auth)
    assert response.status_code == 401
    assert Conversation.objects.get(livekit_room="room-triggered").status == "triggered"


def test_unknown_room_is_acknowledged_and_ignored(world: World, client: Client) -> None:
    response = post(client, event("room_finished", "no-such-room"))
    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored"


def test_only_post_is_allowed(client: Client, db: None) -> None:
    response = client.get(URL)
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_agent_join_and_leave_publish_events_and_keep_status(
    world: World, client: Client, published: list[tuple[str, str]]
) -> None:
    conversation = world.conversations[ConversationStatus.IN_PROGRESS]
    room = conversation.livekit_room or ""
    agent = api.ParticipantInfo.Kind.AGENT
    assert post(client, event("participant_joined", room, identity="agent-1", kind=agent)).json()[
        "outcome"
    ] == ("agent_joined")
    assert post(client, event("participant_left", room, identity="agent-1", kind=agent)).json()[
        "outcome"
    ] == ("agent_left")
    # A standard participant (the caller) changes nothing.
    assert post(client, event("participant_joined", room, identity="caller")).json()["outcome"] == (
        "ignored"
    )
    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.IN_PROGRESS
    assert conversation.metadata["agent"]["identity"] == "agent-1"
    assert published == [("conversation", "agent_joined"), ("conversation", "agent_left")]


def _listener(world: World) -> ListenSession:
    conversation = world.conversations[ConversationStatus.IN_PROGRESS]
    return grant_listen(conversation, via=ListenVia.ADMIN).listen_session


def test_listener_join_and_leave_fill_the_audit(
    world: World, client: Client, published: list[tuple[str, str]]
) -> None:
    session = _listener(world)
    room = session.conversation.livekit_room or ""
    joined, left = int(time.time()) - 20, int(time.time())
    body = event("participant_joined", room, identity=session.listener_identity, created_at=joined)
    assert post(client, body).json()["outcome"] == "listener_joined"
    assert post(client, body).json()["outcome"] == "duplicate"
    body = event("participant_left", room, identity=session.listener_identity, created_at=left)
    assert post(client, body).json()["outcome"] == "listener_left"
    session.refresh_from_db()
    assert session.joined_at is not None and session.left_at is not None
    assert int(session.joined_at.timestamp()) == joined
    assert int(session.left_at.timestamp()) == left
    assert session.listening_seconds == pytest.approx(20, abs=1)
    # A late duplicate of the join (under another id) does not reopen the session.
    late = event("participant_joined", room, identity=session.listener_identity, created_at=joined)
    assert post(client, late).json()["outcome"] == "unchanged"
    session.refresh_from_db()
    assert session.left_at is not None
    assert published == [("listener", "joined"), ("listener", "left")]


def test_room_finished_closes_open_listener_sessions(world: World, client: Client) -> None:
    session = _listener(world)
    room = session.conversation.livekit_room or ""
    post(client, event("participant_joined", room, identity=session.listener_identity))
    post(client, event("room_finished", room))
    session.refresh_from_db()
    assert session.left_at is not None


def test_unknown_listener_identity_is_ignored(world: World, client: Client) -> None:
    room = world.conversations[ConversationStatus.IN_PROGRESS].livekit_room or ""
    body = event("participant_joined", room, identity="listener-" + str(uuid.uuid4()))
    assert post(client, body).json()["outcome"] == "unknown_listener"


def test_revoked_listener_that_joins_is_removed(
    world: World, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    removed: list[tuple[str, str]] = []

    async def fake_remove(targets: Any) -> dict[str, bool]:
        removed.extend(targets)
        return {identity: True for _, identity in targets}

    monkeypatch.setattr(webhooks, "remove_listeners", fake_remove)
    session = _listener(world)
    ListenSession.objects.filter(pk=session.pk).update(revoked_at=session.minted_at)
    room = session.conversation.livekit_room or ""
    body = event("participant_joined", room, identity=session.listener_identity)
    assert post(client, body).json()["outcome"] == "listener_revoked"
    assert removed == [(room, session.listener_identity)]
    session.refresh_from_db()
    assert session.joined_at is None


# --- a delivery that fails on our side: 500, nothing applied, the retry applies it once ----


class FailOnce:
    """Stands in for ``real``: the first call raises OperationalError, later ones pass through."""

    def __init__(self, real: Any) -> None:
        self.real, self.calls = real, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise OperationalError("could not connect to server")  # the database went away
        return self.real(*args, **kwargs)


def _channel_events(organization_id: uuid.UUID) -> Callable[[], list[str]]:
    """What the real channel layer delivers to the organization's group (drained per call:
    up to a sentinel sent to the group now, which a group delivers after the rest)."""
    layer = get_channel_layer()
    assert layer is not None
    group = organization_group(organization_id)
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)

    async def drain() -> list[str]:
        sentinel = {"type": "test.sentinel", "event": uuid.uuid4().hex}
        await layer.group_send(group, sentinel)
        received: list[str] = []
        while (message := await asyncio.wait_for(layer.receive(channel), timeout=5)) != sentinel:
            received.append(f"{message['type']}:{message['event']}")
        return received

    return lambda: async_to_sync(drain)()


def _state() -> list[dict[str, Any]]:
    """Every conversation and listen session as stored (to see that a failure changed nothing)."""
    rows: list[dict[str, Any]] = [
        *map(dict, Conversation.objects.values()),
        *map(dict, ListenSession.objects.values()),
    ]
    return sorted(rows, key=lambda row: str(row["id"]))


def _joined_listener(world: World) -> ListenSession:
    session = _listener(world)
    ListenSession.objects.filter(pk=session.pk).update(joined_at=session.minted_at)
    return session


def _case_room_finished(world: World, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[str]]:
    session = _joined_listener(world)
    # Fails after the call was marked finished and the session's left_at written.
    monkeypatch.setattr(sessions, "publish_listener", FailOnce(sessions.publish_listener))
    body = event("room_finished", session.conversation.livekit_room or "")
    return body, ["conversation.updated:room_finished", "listener.updated:left"]


def _case_registration(world: World, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[str]]:
    # The room registers its call, then moving it fails: the registration must not stay.
    monkeypatch.setattr(conversations, "room_started", FailOnce(conversations.room_started))
    spec = json.dumps({"anyreach": {"organization_id": str(world.org.pk)}})
    body = event("room_started", "call-registered", room_metadata=spec)
    return body, ["conversation.updated:room_registered", "conversation.updated:room_started"]


def _case_listener_left(world: World, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[str]]:
    session = _joined_listener(world)
    monkeypatch.setattr(sessions, "publish_listener", FailOnce(sessions.publish_listener))
    room = session.conversation.livekit_room or ""
    return event("participant_left", room, identity=session.listener_identity), [
        "listener.updated:left"
    ]


def _case_agent_joined(world: World, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[str]]:
    room = world.conversations[ConversationStatus.IN_PROGRESS].livekit_room or ""
    monkeypatch.setattr(
        conversations, "publish_conversation", FailOnce(conversations.publish_conversation)
    )
    agent = api.ParticipantInfo.Kind.AGENT
    return event("participant_joined", room, identity="agent-1", kind=agent), [
        "conversation.updated:agent_joined"
    ]


@pytest.mark.parametrize(
    "case", [_case_room_finished, _case_registration, _case_listener_left, _case_agent_joined]
)
def test_a_delivery_failing_on_our_side_is_a_500_and_its_retry_applies_it_once(
    transactional_db: None,
    world: World,
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    case: Callable[[World, pytest.MonkeyPatch], tuple[str, list[str]]],
) -> None:
    events = _channel_events(world.org.pk)
    body, expected = case(world, monkeypatch)
    before = _state()

    with caplog.at_level(logging.WARNING, logger="anyreach_listen.livekit.webhooks"):
        failed = post(client, body)
    assert failed.status_code == 500  # LiveKit retries 5xx answers
    assert failed.json() == {
        "error": {"code": "internal_error", "message": Errors.INTERNAL_ERROR.message}
    }
    assert "OperationalError" in caplog.text and "Traceback" not in failed.content.decode()
    assert _state() == before, "a failed delivery must change nothing"
    assert events() == [], "and publish nothing"

    retried = post(client, body)  # LiveKit's retry: the very same signed body
    assert retried.status_code == 200
    assert retried.json()["outcome"] not in ("duplicate", "unchanged", "ignored")
    applied = _state()
    assert applied != before
    assert events() == expected

    # Once more, with the remembered ids gone (another worker, a cache flush): no change.
    cache.clear()
    assert post(client, body).json()["outcome"] == "unchanged"
    assert _state() == applied
    assert events() == []


def test_a_cache_outage_does_not_fail_deliveries(
    world: World, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: object, **kwargs: object) -> None:
        raise ConnectionError("cache unreachable")

    monkeypatch.setattr(webhooks.cache, "get", down)
    monkeypatch.setattr(webhooks.cache, "set", down)
    conversation = world.conversations[ConversationStatus.IN_PROGRESS]
    body = event("room_finished", conversation.livekit_room or "")
    assert post(client, body).json()["outcome"] == "room_finished"
    assert post(client, body).json()["outcome"] == "unchanged"  # the state guard still holds


def test_a_stale_copy_of_an_agent_event_changes_nothing(
    world: World, client: Client, published: list[tuple[str, str]]
) -> None:
    conversation = world.conversations[ConversationStatus.IN_PROGRESS]
    room = conversation.livekit_room or ""
    agent = api.ParticipantInfo.Kind.AGENT
    now = int(time.time())
    joined = event("participant_joined", room, identity="agent-1", kind=agent, created_at=now)
    older = event("participant_joined", room, identity="agent-1", kind=agent, created_at=now - 9)
    assert post(client, joined).json()["outcome"] == "agent_joined"
    assert post(client, older).json()["outcome"] == "unchanged"
    conversation.refresh_from_db()
    assert conversation.metadata["agent"]["joined_at"].startswith(
        dt.datetime.fromtimestamp(now, tz=dt.UTC).isoformat()[:19]
    )
    assert published == [("conversation", "agent_joined")]


def test_an_agent_that_leaves_and_rejoins_within_one_second_is_back(
    world: World, client: Client, published: list[tuple[str, str]]
) -> None:
    """LiveKit stamps events to the second: equal times are not copies by themselves."""
    conversation = world.conversations[ConversationStatus.IN_PROGRESS]
    room = conversation.livekit_room or ""
    agent = api.ParticipantInfo.Kind.AGENT
    now = int(time.time())
    outcomes = [
        post(client, event(name, room, identity="agent-1", kind=agent, created_at=now)).json()[
            "outcome"
        ]
        for name in ("participant_joined", "participant_left", "participant_joined")
    ]
    assert outcomes == ["agent_joined", "agent_left", "agent_joined"]
    copy = event("participant_joined", room, identity="agent-1", kind=agent, created_at=now)
    assert post(client, copy).json()["outcome"] == "unchanged"  # a retry of the rejoin
    conversation.refresh_from_db()
    assert conversation.metadata["agent"]["present"] is True
    assert [e for _, e in published] == ["agent_joined", "agent_left", "agent_joined"]
