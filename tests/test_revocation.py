"""Revocation (``revocation.py``): which listeners are affected, when they are removed
(RoomService faked). The signals that trigger it are in ``test_signals.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from anyreach_listen import revocation
from anyreach_listen.models import ConversationStatus, ListenSession, PersonalAccessToken
from tests.support.listeners import fake_remove_listeners, mint_session, world_api_key
from tests.support.world import World


@pytest.fixture
def removed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    return fake_remove_listeners(monkeypatch)


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    events: list[str] = []
    monkeypatch.setattr(
        revocation, "publish_listener", lambda s, e: events.append(f"{s.listener_identity}:{e}")
    )
    return events


def test_revoking_an_api_key_removes_its_listeners_of_ongoing_calls(
    world: World,
    removed: list[tuple[str, str]],
    published: list[str],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    key, other_key = world_api_key(world), world_api_key(world, "m")
    live = mint_session(world, api_key=key)
    joined = mint_session(world, ConversationStatus.RINGING, api_key=key)
    left = mint_session(world, api_key=key)
    ListenSession.objects.filter(pk=left.pk).update(left_at=timezone.now())
    finished = mint_session(world, ConversationStatus.COMPLETED, api_key=key)
    other = mint_session(world, api_key=other_key)

    with django_capture_on_commit_callbacks(execute=True):
        result = revocation.revoke_credential(key)

    # A listener that left is revoked too: its token could still rejoin.
    assert {s.pk for s in result} == {live.pk, joined.pk, left.pk}
    assert sorted(removed) == sorted(
        [
            ("room-in_progress", live.listener_identity),
            ("room-ringing", joined.listener_identity),
            ("room-in_progress", left.listener_identity),
        ]
    )
    key.refresh_from_db()
    assert key.revoked_at is not None
    for session in (live, joined, left):
        session.refresh_from_db()
        assert session.revoked_at is not None
    for session in (finished, other):
        session.refresh_from_db()
        assert session.revoked_at is None
    assert sorted(published) == sorted(
        f"{s.listener_identity}:revoked" for s in (live, joined, left)
    )


def test_revoking_a_pat(
    world: World,
    removed: list[tuple[str, str]],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    user = world.users["supervisor"]
    pat = PersonalAccessToken.objects.filter(user=user).first()
    assert pat is not None
    session = mint_session(world, user=user, personal_access_token=pat)
    untouched = mint_session(world, user=user)  # the same user in the portal: another credential
    with django_capture_on_commit_callbacks(execute=True):
        revocation.revoke_credential(pat)
    assert removed == [("room-in_progress", session.listener_identity)]
    untouched.refresh_from_db()
    assert untouched.revoked_at is None


def test_stop_listener(
    world: World,
    removed: list[tuple[str, str]],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    session = mint_session(world, user=world.users["admin"])
    with django_capture_on_commit_callbacks(execute=True):
        assert revocation.stop_listener(session) is True
    assert removed == [("room-in_progress", session.listener_identity)]
    with django_capture_on_commit_callbacks(execute=True):
        assert revocation.stop_listener(session) is False  # already stopped
    assert len(removed) == 1


def test_livekit_failure_does_not_undo_the_revocation(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    async def broken(targets: Any) -> dict[str, bool]:
        raise OSError("LiveKit is down")

    monkeypatch.setattr(revocation, "remove_listeners", broken)
    session = mint_session(world, user=world.users["admin"])
    with django_capture_on_commit_callbacks(execute=True):
        revocation.stop_listener(session)
    session.refresh_from_db()
    assert session.revoked_at is not None
