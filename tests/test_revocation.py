"""Revocation: which listeners are affected, when they are removed (RoomService faked)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from anyreach_listen import livekit_service, revocation
from anyreach_listen.minting import grant_listen
from anyreach_listen.models import (
    ApiKey,
    Conversation,
    ConversationStatus,
    ListenSession,
    ListenVia,
    Membership,
    PersonalAccessToken,
)
from tests.support.world import World


@pytest.fixture
def removed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []

    async def fake_remove(targets: Any) -> dict[str, bool]:
        calls.extend(targets)
        return {identity: True for _, identity in targets}

    monkeypatch.setattr(revocation, "remove_listeners", fake_remove)
    return calls


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    events: list[str] = []
    monkeypatch.setattr(
        revocation, "publish_listener", lambda s, e: events.append(f"{s.listener_identity}:{e}")
    )
    return events


def _mint(world: World, status: str = ConversationStatus.IN_PROGRESS, **who: Any) -> ListenSession:
    """A session on the world's conversation in ``status``, minted while it was live."""
    conversation = world.conversations[status]
    Conversation.objects.filter(pk=conversation.pk).update(status=ConversationStatus.IN_PROGRESS)
    conversation.status = ConversationStatus.IN_PROGRESS
    session = grant_listen(conversation, via=ListenVia.API, audit=who).listen_session
    Conversation.objects.filter(pk=conversation.pk).update(status=status)
    conversation.status = status
    return session


def _key(world: World, name: str = "rs") -> ApiKey:
    return ApiKey.objects.get(organization=world.org, name=name)


def test_revoking_an_api_key_removes_its_listeners_of_ongoing_calls(
    world: World,
    removed: list[tuple[str, str]],
    published: list[str],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    key, other_key = _key(world), _key(world, "m")
    live = _mint(world, api_key=key)
    joined = _mint(world, ConversationStatus.RINGING, api_key=key)
    left = _mint(world, api_key=key)
    ListenSession.objects.filter(pk=left.pk).update(left_at=timezone.now())
    finished = _mint(world, ConversationStatus.COMPLETED, api_key=key)
    other = _mint(world, api_key=other_key)

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


def test_saving_revoked_at_directly_also_revokes(
    world: World,
    removed: list[tuple[str, str]],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    key = _key(world)
    session = _mint(world, api_key=key)
    with django_capture_on_commit_callbacks(execute=True):
        key.revoked_at = timezone.now()
        key.save()  # e.g. the admin's change form
    assert removed == [("room-in_progress", session.listener_identity)]
    with django_capture_on_commit_callbacks(execute=True):
        key.save()  # saving again: nothing left to revoke
        revocation.revoke_credential(key)
    assert len(removed) == 1


def test_revoking_a_pat(
    world: World,
    removed: list[tuple[str, str]],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    user = world.users["supervisor"]
    pat = PersonalAccessToken.objects.filter(user=user).first()
    assert pat is not None
    session = _mint(world, user=user, personal_access_token=pat)
    untouched = _mint(world, user=user)  # the same user in the portal: another credential
    with django_capture_on_commit_callbacks(execute=True):
        revocation.revoke_credential(pat)
    assert removed == [("room-in_progress", session.listener_identity)]
    untouched.refresh_from_db()
    assert untouched.revoked_at is None


def test_deleting_a_membership_removes_the_members_listeners(
    world: World,
    removed: list[tuple[str, str]],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    user = world.users["supervisor"]
    portal = _mint(world, user=user)
    elsewhere = grant_listen(
        world.conversations["other_org"], via=ListenVia.API, audit={"user": user}
    ).listen_session
    with django_capture_on_commit_callbacks(execute=True):
        Membership.objects.get(user=user, organization=world.org).delete()
    assert removed == [("room-in_progress", portal.listener_identity)]
    elsewhere.refresh_from_db()
    assert elsewhere.revoked_at is None


def test_deleting_a_user_removes_their_listeners(
    world: World,
    removed: list[tuple[str, str]],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    session = _mint(world, user=world.users["qa"])
    with django_capture_on_commit_callbacks(execute=True):
        world.users["qa"].delete()
    assert removed == [("room-in_progress", session.listener_identity)]
    session.refresh_from_db()
    assert session.revoked_at is not None and session.user is None


def test_stop_listener(
    world: World,
    removed: list[tuple[str, str]],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    session = _mint(world, user=world.users["admin"])
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
    session = _mint(world, user=world.users["admin"])
    with django_capture_on_commit_callbacks(execute=True):
        revocation.stop_listener(session)
    session.refresh_from_db()
    assert session.revoked_at is not None


async def _answer() -> int:
    await asyncio.sleep(0)
    return 42


def test_run_sync_without_a_loop() -> None:
    assert livekit_service.run_sync(_answer()) == 42


def test_run_sync_inside_a_running_loop() -> None:
    async def caller() -> int:
        # Sync code called straight from a coroutine (no sync_to_async in between).
        return livekit_service.run_sync(_answer())

    # In a thread of its own: this test's thread may already run a loop (Playwright).
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(asyncio.run, caller()).result() == 42
