"""The revocation paths hand back taken-over calls: every receiver in ``signals.py`` that
revokes listeners also ends (``access_lost``) the takeovers whose holder may no longer take
that call over; once committed the supervisor is taken out and the agent resumed, before
the change's request returns (LiveKit faked as in tests/assist/test_takeover.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from anyreach_listen.access.credentials import issue_api_key, issue_pat
from anyreach_listen.access.roles import Role, Scope
from anyreach_listen.assist import takeover
from anyreach_listen.listening import revocation
from anyreach_listen.models import ApiKey, Conversation, Membership, Takeover, TakeoverEnd
from tests.assist.test_takeover import TakeoverRoom
from tests.assist.test_takeover import room as room  # the fixture
from tests.support.world import World

Capture = Callable[..., Any]


def start(world: World, call: str = "in_progress", **audit: Any) -> Takeover:
    conversation = Conversation.objects.get(pk=world.conversations[call].pk)
    return takeover.take_over(conversation, audit=audit).takeover


def after(row: Takeover) -> Takeover:
    return Takeover.objects.get(pk=row.pk)


def assert_handed_back(row: Takeover, room: TakeoverRoom) -> None:
    ended = after(row)
    assert ended.ended_by == TakeoverEnd.ACCESS_LOST
    # Within the change's own request: well inside the issue's 2 s.
    assert ended.resumed_at is not None and ended.ended_at is not None
    assert (ended.resumed_at - ended.ended_at).total_seconds() < 2
    assert room.log[-2:] == [("remove", ended.identity), ("resume", room.log[-1][1])]


def assert_held(row: Takeover) -> None:
    assert after(row).ended_at is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "kept"), [(Role.QA, False), (Role.VIEWER, False), (Role.ADMIN, True)]
)
def test_a_new_role_without_the_right_hands_back(
    world: World,
    room: TakeoverRoom,
    django_capture_on_commit_callbacks: Capture,
    role: str,
    kept: bool,
) -> None:
    row = start(world, user=world.users["supervisor"])
    membership = Membership.objects.get(user=world.users["supervisor"], organization=world.org)
    with django_capture_on_commit_callbacks(execute=True):
        membership.role = role
        membership.save()
    if kept:
        assert_held(row)
    else:
        assert_handed_back(row, room)


@pytest.mark.django_db
def test_leaving_the_calls_team_hands_back(
    world: World, room: TakeoverRoom, django_capture_on_commit_callbacks: Capture
) -> None:
    row = start(world, user=world.users["supervisor"])
    membership = Membership.objects.get(user=world.users["supervisor"], organization=world.org)
    with django_capture_on_commit_callbacks(execute=True):
        membership.teams.add(world.other_team)
    assert_held(row)
    with django_capture_on_commit_callbacks(execute=True):
        membership.teams.remove(world.team)
    assert_handed_back(row, room)


@pytest.mark.django_db
def test_losing_the_membership_hands_back_only_that_organizations_calls(
    world: World, room: TakeoverRoom, django_capture_on_commit_callbacks: Capture
) -> None:
    user = world.users["supervisor"]
    Membership.objects.create(user=user, organization=world.other_org, role=Role.ADMIN)
    here = start(world, user=user)
    elsewhere = start(world, "other_org", user=user)
    with django_capture_on_commit_callbacks(execute=True):
        Membership.objects.get(user=user, organization=world.org).delete()
    assert_handed_back(here, room)
    assert_held(elsewhere)


@pytest.mark.django_db
def test_a_deactivated_person_hands_back_and_a_renamed_one_does_not(
    world: World, room: TakeoverRoom, django_capture_on_commit_callbacks: Capture
) -> None:
    user = world.users["supervisor"]
    row = start(world, user=user)
    with django_capture_on_commit_callbacks(execute=True):
        user.first_name = "Ana"
        user.save()
    assert_held(row)
    with django_capture_on_commit_callbacks(execute=True):
        user.is_active = False
        user.save()
    assert_handed_back(row, room)


@pytest.mark.django_db
def test_a_call_moved_to_another_team_hands_back_the_supervisor_but_not_an_admin(
    world: World, room: TakeoverRoom, django_capture_on_commit_callbacks: Capture
) -> None:
    row = start(world, user=world.users["supervisor"])
    conversation = Conversation.objects.get(pk=row.conversation_id)
    with django_capture_on_commit_callbacks(execute=True):
        conversation.team = world.other_team
        conversation.save()
    assert_handed_back(row, room)
    admins = start(world, user=world.users["admin"])
    with django_capture_on_commit_callbacks(execute=True):
        conversation.team = world.team
        conversation.save()
    assert_held(admins)


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["revoke_credential", "admin form", "scope taken", "deleted"])
def test_an_api_key_revoked_changed_or_deleted_hands_back(
    world: World, room: TakeoverRoom, django_capture_on_commit_callbacks: Capture, how: str
) -> None:
    key, _ = issue_api_key(world.org, "bot", [Scope.TAKE_OVER, Scope.READ])
    row = start(world, api_key=key)
    with django_capture_on_commit_callbacks(execute=True):
        if how == "revoke_credential":  # the portal's and manage.py revoke_api_key's path
            revocation.revoke_credential(key)
        elif how == "admin form":
            key.revoked_at = timezone.now()
            key.save()
        elif how == "scope taken":
            key.scopes = [Scope.READ]
            key.save()
        else:
            ApiKey.objects.get(pk=key.pk).delete()
    assert_handed_back(row, room)
    assert after(row).credential_label == f"API key {key}"  # named after it is gone


@pytest.mark.django_db
def test_a_revoked_pat_hands_back_its_own_takeover_only(
    world: World, room: TakeoverRoom, django_capture_on_commit_callbacks: Capture
) -> None:
    user = world.users["supervisor"]
    pat, _ = issue_pat(user, "t", [Scope.TAKE_OVER])
    by_pat = start(world, user=user, personal_access_token=pat)
    in_portal = start(world, "ringing", user=user)
    with django_capture_on_commit_callbacks(execute=True):
        revocation.revoke_credential(pat)
    assert_handed_back(by_pat, room)
    assert_held(in_portal)


@pytest.mark.django_db
def test_a_change_that_keeps_the_right_ends_nothing_and_asks_livekit_nothing(
    world: World, room: TakeoverRoom, django_capture_on_commit_callbacks: Capture
) -> None:
    key, _ = issue_api_key(world.org, "bot", [Scope.TAKE_OVER])
    row = start(world, api_key=key)
    before = list(room.log)
    with django_capture_on_commit_callbacks(execute=True):
        key.name = "wallboard"
        key.save()
    assert_held(row)
    assert room.log == before
