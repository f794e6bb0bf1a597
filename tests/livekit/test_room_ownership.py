"""room_ownership.py: a room belongs to the organization its LiveKit metadata names.

A tenant's registration is a claim (prefix, recent use by another organization,
LiveKit's metadata); the webhooks take a room back from a squatter; a
conversation that lost its room gets nothing of the owner's call. LiveKit's
answer is stubbed here (``livekit_owner``); tests/e2e/test_room_ownership.py
asks a real server.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from livekit import api

from anyreach_listen import conversations
from anyreach_listen.access.credentials import issue_api_key
from anyreach_listen.access.roles import Scope
from anyreach_listen.api.errors import ApiError
from anyreach_listen.listening import revocation
from anyreach_listen.listening.minting import grant_listen
from anyreach_listen.livekit import room_ownership, webhooks
from anyreach_listen.livekit.service import Dispatched
from anyreach_listen.models import Conversation, ConversationStatus, ListenVia
from anyreach_listen.recorder import dispatch as recorder_dispatch
from anyreach_listen.recorder import intake as recorder_intake
from tests.support.api import call
from tests.support.listeners import fake_remove_listeners
from tests.support.livekit import deliver_webhook, webhook_event
from tests.support.world import World, make_conversation

COLLECTION = "/core/conversations"


def metadata_of(organization_id: object) -> str:
    return json.dumps({"anyreach": {"organization_id": str(organization_id)}})


@pytest.fixture
def livekit_says(monkeypatch: pytest.MonkeyPatch) -> dict[str, uuid.UUID]:
    """Room name -> the owner LiveKit's metadata names (rooms not listed: none)."""
    owners: dict[str, uuid.UUID] = {}
    monkeypatch.setattr(room_ownership, "livekit_owner", owners.get)
    return owners


@pytest.fixture
def removed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    calls = fake_remove_listeners(monkeypatch)
    # The webhooks remove a listener that may not be in the room through the same call.
    monkeypatch.setattr(webhooks, "remove_listeners", revocation.remove_listeners)
    return calls


def error_code(response: Any) -> str:
    return str(response.json()["error"]["code"])


@pytest.mark.parametrize(
    ("metadata", "named"),
    [
        ('{"anyreach": {"organization_id": "%s"}}', True),
        ('{"anyreach": {"organization_id": "not-a-uuid"}}', False),
        ('{"anyreach": {"organization_id": 7}}', False),
        ('{"anyreach": "x"}', False),
        ('{"other": {"organization_id": "%s"}}', False),
        ("[1, 2]", False),
        ("not json", False),
        ("", False),
    ],
)
def test_owner_named_reads_only_the_anyreach_organization(metadata: str, named: bool) -> None:
    org = uuid.uuid4()
    text = metadata % org if "%s" in metadata else metadata
    assert room_ownership.owner_named(text) == (org if named else None)


def test_a_room_outside_the_organizations_prefix_is_not_owned(
    client: Client, world: World, livekit_says: dict[str, uuid.UUID]
) -> None:
    world.org.room_prefix = "acme-"
    world.org.save()
    refused = call(client, "post", COLLECTION, world.secrets["ak_manage"], {"room_name": "call-1"})
    assert refused.status_code == 403
    assert error_code(refused) == "room_not_owned"
    assert "acme-" in refused.json()["error"]["message"]
    assert not Conversation.objects.filter(livekit_room="call-1").exists()
    created = call(client, "post", COLLECTION, world.secrets["ak_manage"], {"room_name": "acme-1"})
    assert created.status_code == 201


def test_patching_in_a_room_outside_the_prefix_is_refused(
    client: Client, world: World, livekit_says: dict[str, uuid.UUID]
) -> None:
    world.org.room_prefix = "acme-"
    world.org.save()
    roomless = world.conversations["no_room"]
    path = f"{COLLECTION}/{roomless.pk}"
    refused = call(client, "patch", path, world.secrets["ak_manage"], {"room_name": "call-2"})
    assert refused.status_code == 403
    assert error_code(refused) == "room_not_owned"
    roomless.refresh_from_db()
    assert roomless.livekit_room is None


@pytest.mark.parametrize(
    ("ended_hours_ago", "same_org", "status"),
    [
        (1, False, 409),  # another organization, 1 h ago: still theirs
        (23, False, 409),
        (25, False, 201),  # a day later the name is free
        (1, True, 201),  # an organization reuses its own room names at once
    ],
)
def test_a_room_another_organization_used_today_is_in_use(
    client: Client,
    world: World,
    livekit_says: dict[str, uuid.UUID],
    ended_hours_ago: int,
    same_org: bool,
    status: int,
) -> None:
    earlier = make_conversation(
        world.org if same_org else world.other_org, None, ConversationStatus.COMPLETED, "call-9"
    )
    earlier.ended_at = timezone.now() - dt.timedelta(hours=ended_hours_ago)
    earlier.save()
    response = call(client, "post", COLLECTION, world.secrets["ak_manage"], {"room_name": "call-9"})
    assert response.status_code == status, response.content
    if status == 409:
        assert error_code(response) == "room_in_use"


def test_a_room_livekit_says_is_another_organizations_is_not_owned(
    client: Client, world: World, livekit_says: dict[str, uuid.UUID]
) -> None:
    livekit_says["call-b"] = world.other_org.pk
    livekit_says["call-a"] = world.org.pk
    refused = call(client, "post", COLLECTION, world.secrets["ak_manage"], {"room_name": "call-b"})
    assert refused.status_code == 403
    assert error_code(refused) == "room_not_owned"
    created = call(client, "post", COLLECTION, world.secrets["ak_manage"], {"room_name": "call-a"})
    assert created.status_code == 201


def test_the_python_service_checks_the_claim_too(
    world: World, livekit_says: dict[str, uuid.UUID]
) -> None:
    livekit_says["call-b"] = world.other_org.pk
    with pytest.raises(ApiError) as refused:
        conversations.register(world.org, room_name="call-b")
    assert refused.value.code == "room_not_owned"
    # The platform's own assignment (room metadata) is not a claim.
    conversation, created = conversations.register(
        world.other_org, room_name="call-b", platform_assigned=True
    )
    assert created and conversation.livekit_room == "call-b"


def squat(world: World) -> Conversation:
    """Acme registers room call-77 before the platform starts it for Other; Acme listens."""
    squatter, _ = conversations.register(world.org, room_name="call-77")
    grant_listen(squatter, via=ListenVia.API)
    return squatter


def test_room_started_for_another_organization_takes_the_room_from_the_squatter(
    client: Client,
    world: World,
    livekit_says: dict[str, uuid.UUID],
    removed: list[tuple[str, str]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    squatter = squat(world)
    session = squatter.listen_sessions.get()

    body = webhook_event("room_started", "call-77", room_metadata=metadata_of(world.other_org.pk))
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver_webhook(client, body)
    assert response.json()["outcome"] == "registered"

    squatter.refresh_from_db()
    assert squatter.status == ConversationStatus.FAILED
    assert squatter.livekit_room is None
    assert squatter.metadata["ended_by"] == "room_not_owned"
    assert squatter.metadata["lost_room"] == "call-77"
    session.refresh_from_db()
    assert session.revoked_at is not None
    assert removed == [("call-77", session.listener_identity)]
    owner = Conversation.objects.active().get(livekit_room="call-77")
    assert owner.organization_id == world.other_org.pk
    # The squatter's recorder deliveries have nowhere to go.
    with pytest.raises(ApiError) as missing:
        recorder_intake.resolve("call-77", squatter.pk)
    assert missing.value.code == "conversation_not_found"
    assert recorder_intake.resolve("call-77", None) == owner
    # And it cannot claim the room again while the owner's call runs.
    with pytest.raises(ApiError) as again:
        conversations.register(world.org, room_name="call-77")
    assert again.value.code == "room_in_use"


def test_a_participant_joining_a_room_whose_conversation_ended_takes_it_back(
    client: Client,
    world: World,
    livekit_says: dict[str, uuid.UUID],
    removed: list[tuple[str, str]],
) -> None:
    # The squatter's call ended while the room stayed open: a completed room is not free.
    squatter = squat(world)
    conversations.finish(squatter, status=ConversationStatus.COMPLETED)
    body = webhook_event(
        "participant_joined",
        "call-77",
        identity="caller",
        room_metadata=metadata_of(world.other_org.pk),
    )
    assert deliver_webhook(client, body).status_code == 200
    squatter.refresh_from_db()
    assert squatter.status == ConversationStatus.COMPLETED
    assert squatter.livekit_room is None
    owner = Conversation.objects.active().get(livekit_room="call-77")
    assert owner.organization_id == world.other_org.pk


def test_metadata_naming_the_same_organization_changes_nothing(
    client: Client, world: World, livekit_says: dict[str, uuid.UUID]
) -> None:
    own, _ = conversations.register(world.org, room_name="call-5")
    body = webhook_event("room_started", "call-5", room_metadata=metadata_of(world.org.pk))
    assert deliver_webhook(client, body).json()["outcome"] in ("room_started", "unchanged")
    own.refresh_from_db()
    assert own.livekit_room == "call-5" and own.is_active
    assert Conversation.objects.filter(livekit_room="call-5").count() == 1


def lost_room_with_a_listener(world: World, client: Client) -> tuple[Conversation, str]:
    """The squatter's call lost call-77 to Other; the identity of its unredeemed token."""
    squatter = squat(world)
    identity = squatter.listen_sessions.get().listener_identity
    body = webhook_event("room_started", "call-77", room_metadata=metadata_of(world.other_org.pk))
    deliver_webhook(client, body)
    return squatter, identity


def test_a_listener_of_the_call_that_lost_the_room_is_removed_when_it_joins(
    client: Client, world: World, removed: list[tuple[str, str]]
) -> None:
    _, identity = lost_room_with_a_listener(world, client)
    removed.clear()
    joined = webhook_event("participant_joined", "call-77", identity=identity)
    assert deliver_webhook(client, joined).json()["outcome"] == "listener_foreign"
    assert removed == [("call-77", identity)]


def test_a_listener_minted_for_an_earlier_call_under_a_reused_name_is_removed(
    client: Client, world: World, removed: list[tuple[str, str]]
) -> None:
    # The room closed (its listeners were marked gone, not revoked); the name is reused.
    earlier, _ = conversations.register(world.org, room_name="call-8")
    identity = grant_listen(earlier, via=ListenVia.API).listen_session.listener_identity
    deliver_webhook(client, webhook_event("room_finished", "call-8"))
    conversations.register(world.org, room_name="call-8")
    joined = webhook_event("participant_joined", "call-8", identity=identity)
    assert deliver_webhook(client, joined).json()["outcome"] == "listener_foreign"
    assert removed == [("call-8", identity)]


def test_the_sweep_removes_a_listener_of_another_call_from_a_live_room(
    client: Client,
    world: World,
    removed: list[tuple[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, identity = lost_room_with_a_listener(world, client)
    owner = Conversation.objects.active().get(livekit_room="call-77")
    own = grant_listen(owner, via=ListenVia.API).listen_session.listener_identity
    removed.clear()

    async def in_rooms(rooms: Any) -> dict[str, set[str]]:
        return {"call-77": {identity, own}} if "call-77" in rooms else {}

    monkeypatch.setattr(revocation, "list_listeners", in_rooms)
    assert revocation.sweep().removed == 1
    assert removed == [("call-77", identity)]


def test_a_mint_that_raced_the_loss_of_the_room_is_refused_and_leaves_no_row(
    client: Client, world: World
) -> None:
    squatter, _ = conversations.register(world.org, room_name="call-77")
    stale = Conversation.objects.get(pk=squatter.pk)  # read before the webhook
    body = webhook_event("room_started", "call-77", room_metadata=metadata_of(world.other_org.pk))
    deliver_webhook(client, body)
    with pytest.raises(ApiError) as refused:
        grant_listen(stale, via=ListenVia.API)
    assert refused.value.code == "conversation_not_active"
    assert not squatter.listen_sessions.exists()


def test_a_call_that_lost_its_room_takes_no_other_even_with_its_metadata_rewritten(
    client: Client, world: World
) -> None:
    squatter, _ = lost_room_with_a_listener(world, client)
    path = f"{COLLECTION}/{squatter.pk}"
    body = {"metadata": {}, "room_name": "call-elsewhere"}
    response = call(client, "patch", path, world.secrets["ak_manage"], body)
    assert response.status_code == 409, response.content
    assert error_code(response) == "invalid_transition"
    squatter.refresh_from_db()
    assert squatter.livekit_room is None and squatter.metadata["lost_room"] == "call-77"


def test_the_owner_registering_through_the_api_takes_the_room_from_a_squatter(
    client: Client, world: World, livekit_says: dict[str, uuid.UUID]
) -> None:
    # Before the webhook came: LiveKit already says the room is Other's.
    squatter, _ = conversations.register(world.org, room_name="call-77")
    livekit_says["call-77"] = world.other_org.pk
    other_key = issue_api_key(world.other_org, "platform", [Scope.MANAGE])[1]
    response = call(client, "post", COLLECTION, other_key, {"room_name": "call-77"})
    assert response.status_code == 201, response.content
    squatter.refresh_from_db()
    assert squatter.status == ConversationStatus.FAILED and squatter.livekit_room is None


def test_the_recorder_sweep_takes_a_room_whose_webhook_was_missed(
    world: World, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    # Recorders are opt-in; with them on, their sweep sees the room's metadata too.
    recorder = {"AGENT_NAME": "anyreach-recorder", "PER_ROOM": 2}
    settings.ANYREACH_LISTEN = {**settings.ANYREACH_LISTEN, "RECORDER": recorder}
    squatter, _ = conversations.register(world.org, room_name="call-77")
    metadata = metadata_of(world.other_org.pk)

    async def open_room(targets: Any) -> dict[str, Dispatched | None]:
        # What ensure_agents answers for an open room its target does not own.
        return {
            t.room: Dispatched(room_open=True, refused=not t.owns(api.Room(metadata=metadata)))
            for t in targets
        }

    monkeypatch.setattr(recorder_dispatch, "_ensure", open_room)
    recorder_dispatch.sweep()
    squatter.refresh_from_db()
    assert squatter.status == ConversationStatus.FAILED and squatter.livekit_room is None
