"""Signal receivers (``signals.py``): saving a revoked credential, deleting a membership
or a user revokes their listeners (RoomService faked)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from anyreach_listen import revocation
from anyreach_listen.minting import grant_listen
from anyreach_listen.models import ListenVia, Membership
from tests.support.listeners import fake_remove_listeners, mint_session, world_api_key
from tests.support.world import World


@pytest.fixture
def removed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    return fake_remove_listeners(monkeypatch)


def test_saving_revoked_at_directly_also_revokes(
    world: World,
    removed: list[tuple[str, str]],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    key = world_api_key(world)
    session = mint_session(world, api_key=key)
    with django_capture_on_commit_callbacks(execute=True):
        key.revoked_at = timezone.now()
        key.save()  # e.g. the admin's change form
    assert removed == [("room-in_progress", session.listener_identity)]
    with django_capture_on_commit_callbacks(execute=True):
        key.save()  # saving again: nothing left to revoke
        revocation.revoke_credential(key)
    assert len(removed) == 1


def test_deleting_a_membership_removes_the_members_listeners(
    world: World,
    removed: list[tuple[str, str]],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    user = world.users["supervisor"]
    portal = mint_session(world, user=user)
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
    session = mint_session(world, user=world.users["qa"])
    with django_capture_on_commit_callbacks(execute=True):
        world.users["qa"].delete()
    assert removed == [("room-in_progress", session.listener_identity)]
    session.refresh_from_db()
    assert session.revoked_at is not None and session.user is None
