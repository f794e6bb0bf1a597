"""Signal receivers (``signals.py``): saving a revoked credential, deleting a membership
or a user revokes their listeners (RoomService faked)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from anyreach_listen.access.roles import Role, Scope
from anyreach_listen.listening import revocation
from anyreach_listen.listening.minting import grant_listen
from anyreach_listen.models import ApiKey, ListenSession, ListenVia, Membership, PersonalAccessToken
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
    Membership.objects.create(user=user, organization=world.other_org, role=Role.ADMIN)
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


# --- every loss of access takes the listeners out (issue 11, item 1) -----------------------


def _live_pat_and_portal_sessions(world: World, role: str) -> list[ListenSession]:
    """A member's listens on their team's live call: through the portal and with a PAT."""
    user = world.users[role]
    pat = PersonalAccessToken.objects.get(user=user, name="all")
    return [
        mint_session(world, user=user),
        mint_session(world, user=user, personal_access_token=pat),
    ]


def _all_revoked(sessions: list[ListenSession], removed: list[tuple[str, str]]) -> None:
    for session in sessions:
        session.refresh_from_db()
        assert session.revoked_at is not None, session
    assert sorted(identity for _, identity in removed) == sorted(
        s.listener_identity for s in sessions
    )


def _demote(membership: Membership) -> None:
    membership.role = Role.VIEWER
    membership.save()


def _deactivate(membership: Membership) -> None:
    membership.user.is_active = False
    membership.user.save()


@pytest.mark.parametrize(
    "take_away",
    [
        pytest.param(_demote, id="demoted_to_viewer"),
        pytest.param(lambda m: m.teams.clear(), id="teams_cleared"),
        pytest.param(lambda m: m.teams.remove(*m.teams.all()), id="removed_from_team"),
        pytest.param(_deactivate, id="deactivated"),
    ],
)
def test_losing_the_right_takes_the_members_listeners_out(
    world: World,
    removed: list[tuple[str, str]],
    django_capture_on_commit_callbacks: Callable[..., Any],
    take_away: Callable[[Membership], object],
) -> None:
    sessions = _live_pat_and_portal_sessions(world, "supervisor")
    someone_else = mint_session(world, user=world.users["qa"])
    membership = Membership.objects.get(user=world.users["supervisor"], organization=world.org)
    with django_capture_on_commit_callbacks(execute=True):
        take_away(membership)
    _all_revoked(sessions, removed)
    someone_else.refresh_from_db()
    assert someone_else.revoked_at is None


def test_a_change_that_keeps_the_right_revokes_nothing(
    world: World,
    removed: list[tuple[str, str]],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    sessions = _live_pat_and_portal_sessions(world, "supervisor")
    membership = Membership.objects.get(user=world.users["supervisor"], organization=world.org)
    with django_capture_on_commit_callbacks(execute=True):
        membership.role = Role.QA  # QA analysts may listen too
        membership.save()
        membership.teams.add(world.other_team)
        user = membership.user
        user.first_name = "Renamed"
        user.save()
    assert removed == []
    assert all(
        s.revoked_at is None for s in ListenSession.objects.filter(pk__in=[s.pk for s in sessions])
    )


@pytest.mark.parametrize("kind", ["api_key", "pat"])
def test_deleting_a_credential_revokes_first_and_the_audit_keeps_its_name(
    world: World,
    removed: list[tuple[str, str]],
    django_capture_on_commit_callbacks: Callable[..., Any],
    kind: str,
) -> None:
    if kind == "api_key":
        credential: ApiKey | PersonalAccessToken = world_api_key(world)
        session = mint_session(world, api_key=credential)
    else:
        user = world.users["supervisor"]
        credential = PersonalAccessToken.objects.get(user=user, name="all")
        session = mint_session(world, user=user, personal_access_token=credential)
    label = session.credential_label
    assert credential.lookup_id in label
    with django_capture_on_commit_callbacks(execute=True):
        credential.delete()
    session.refresh_from_db()
    assert session.revoked_at is not None
    assert removed == [("room-in_progress", session.listener_identity)]
    assert session.credential_label == label  # who it was, after the row is gone
    if kind == "api_key":
        assert session.who == f"API key {label.removeprefix('API key ')}"


def test_an_api_key_that_loses_its_listen_scope_loses_its_listeners(
    world: World,
    removed: list[tuple[str, str]],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    key = world_api_key(world)
    session = mint_session(world, api_key=key)
    with django_capture_on_commit_callbacks(execute=True):
        key.scopes = [Scope.READ]
        key.save()
    session.refresh_from_db()
    assert session.revoked_at is not None
    assert removed == [("room-in_progress", session.listener_identity)]


def test_moving_a_call_to_another_team_takes_the_old_teams_listeners_out(
    world: World,
    removed: list[tuple[str, str]],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    supervisor = mint_session(world, user=world.users["supervisor"])
    admin = mint_session(world, user=world.users["admin"])  # sees every team
    conversation = supervisor.conversation
    with django_capture_on_commit_callbacks(execute=True):
        conversation.team = world.other_team
        conversation.save()
    assert removed == [("room-in_progress", supervisor.listener_identity)]
    admin.refresh_from_db()
    assert admin.revoked_at is None
