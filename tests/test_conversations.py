"""The conversations service: the one writer of a conversation's state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from anyreach_listen import conversations
from anyreach_listen.api.errors import ApiError
from anyreach_listen.listening.minting import grant_listen
from anyreach_listen.models import Conversation, ConversationStatus, ListenVia, Team
from tests.support.listeners import fake_remove_listeners
from tests.support.world import World

S = ConversationStatus
# (from, to) pairs a status may take; every other pair is refused. Staying put is a no-op.
FORWARD = {
    (S.TRIGGERED, S.RINGING),
    (S.TRIGGERED, S.IN_PROGRESS),
    (S.RINGING, S.IN_PROGRESS),
    *{
        (a, b)
        for a in (S.TRIGGERED, S.RINGING, S.IN_PROGRESS)
        for b in (S.COMPLETED, S.FAILED, S.CANCELED)
    },
}


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    events: list[str] = []
    monkeypatch.setattr(conversations, "publish_conversation", lambda c, e: events.append(e))
    return events


@pytest.fixture
def removed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    return fake_remove_listeners(monkeypatch)


def test_register_starts_an_answered_call_and_publishes(world: World, published: list[str]) -> None:
    call, created = conversations.register(world.org, room_name="r-1", team=world.team)
    assert created and call.status == S.IN_PROGRESS and call.started_at is not None
    ringing, _ = conversations.register(world.org, status=S.RINGING)
    assert ringing.started_at is None and ringing.livekit_room is None
    assert published == ["registered", "registered"]


def test_external_id_makes_registration_idempotent(world: World, published: list[str]) -> None:
    first, created = conversations.register(world.org, external_id="ext-1", caller_label="A")
    again, created_again = conversations.register(world.org, external_id="ext-1", caller_label="B")
    assert created and not created_again and again.pk == first.pk
    assert Conversation.objects.get(pk=first.pk).caller_label == "A"
    # Another organization's external ids are its own.
    _, elsewhere = conversations.register(world.other_org, external_id="ext-1")
    assert elsewhere
    assert published == ["registered", "registered"]


def test_a_room_belongs_to_one_active_conversation(world: World) -> None:
    with pytest.raises(ApiError) as refused:
        conversations.register(world.other_org, room_name="room-in_progress")
    assert refused.value.code == "room_in_use"
    # A room whose conversation ended can be used again.
    again, created = conversations.register(world.org, room_name="room-completed")
    assert created and again.livekit_room == "room-completed"


def test_team_must_belong_to_the_organization(world: World) -> None:
    foreign = Team.objects.create(organization=world.other_org, name="Ops")
    with pytest.raises(ApiError) as refused:
        conversations.register(world.org, team=foreign)
    assert refused.value.code == "invalid_team"
    with pytest.raises(ApiError) as refused:
        conversations.update(world.conversations["ringing"], team=foreign, set_team=True)
    assert refused.value.code == "invalid_team"


@pytest.mark.parametrize("start", list(S))
@pytest.mark.parametrize("target", list(S))
def test_status_moves_only_forward(world: World, start: str, target: str) -> None:
    call = Conversation.objects.create(organization=world.org, status=start)
    if start == target:
        unchanged = conversations.update(call, status=target)
        assert (unchanged.status, unchanged.updated_at) == (start, call.updated_at)
    elif (start, target) in FORWARD:
        updated = conversations.update(call, status=target)
        assert updated.status == target
        assert (updated.ended_at is not None) == (target in (S.COMPLETED, S.FAILED, S.CANCELED))
        if target == S.IN_PROGRESS:
            assert updated.started_at is not None
    else:
        with pytest.raises(ApiError) as refused:
            conversations.update(call, status=target)
        assert refused.value.code == "invalid_transition"
        assert start in refused.value.message
        assert Conversation.objects.get(pk=call.pk).status == start


def test_room_name_is_set_once(world: World) -> None:
    call = world.conversations["no_room"]
    assert conversations.update(call, room_name="late-room").livekit_room == "late-room"
    assert conversations.update(call, room_name="late-room").livekit_room == "late-room"
    with pytest.raises(ApiError) as refused:
        conversations.update(call, room_name="another-room")
    assert refused.value.code == "invalid_transition"


def test_ending_a_call_revokes_its_listeners(
    world: World,
    removed: list[tuple[str, str]],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    call = world.conversations["in_progress"]
    session = grant_listen(call, via=ListenVia.API).listen_session
    with django_capture_on_commit_callbacks(execute=True):
        assert conversations.finish(call, status=S.FAILED, by="api")
    session.refresh_from_db()
    assert session.revoked_at is not None
    assert removed == [("room-in_progress", session.listener_identity)]
    call.refresh_from_db()
    assert call.status == S.FAILED and call.metadata["ended_by"] == "api"
    # Finishing again changes nothing.
    assert not conversations.finish(call, status=S.COMPLETED)


def test_a_closed_room_marks_its_listeners_gone_instead(world: World) -> None:
    call = world.conversations["in_progress"]
    session = grant_listen(call, via=ListenVia.API).listen_session
    # It joined: the webhook saw it.
    type(session).objects.filter(pk=session.pk).update(joined_at=timezone.now())
    assert conversations.finish(call, by="room_finished", room_closed=True)
    session.refresh_from_db()
    assert session.left_at is not None and session.revoked_at is None
