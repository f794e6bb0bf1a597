"""Revocation (``revocation.py``): which listeners are affected, when they are removed
(RoomService faked). The signals that trigger it are in ``test_signals.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from anyreach_listen.listening import revocation, sessions
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
        sessions, "publish_listener", lambda s, e: events.append(f"{s.listener_identity}:{e}")
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
    pat = PersonalAccessToken.objects.get(user=user, name="all")
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
    # No retries: a retry thread would outlive this test and meet the next one's fake.
    monkeypatch.setattr(revocation, "RETRY_DELAYS", ())
    session = mint_session(world, user=world.users["admin"])
    with django_capture_on_commit_callbacks(execute=True):
        revocation.stop_listener(session)
    session.refresh_from_db()
    assert session.revoked_at is not None


def test_stop_listener_also_stops_one_that_left_and_could_rejoin(
    world: World,
    removed: list[tuple[str, str]],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    session = mint_session(world, user=world.users["admin"])
    ListenSession.objects.filter(pk=session.pk).update(
        joined_at=timezone.now(), left_at=timezone.now()
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert revocation.stop_listener(session) is True
    session.refresh_from_db()
    assert session.revoked_at is not None  # so the participant_joined webhook removes it


# --- a mint racing a revocation (issue 11, item 3) -----------------------------------------


def _stale(world: World) -> dict[str, Callable[[], Any]]:
    """Authorization done with rows read before a revocation committed: each case
    changes the database behind the in-memory objects the caller checked."""
    from anyreach_listen.access.roles import Role
    from anyreach_listen.models import ApiKey, Membership

    def key_revoked() -> dict[str, Any]:
        key = world_api_key(world)
        ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
        return {"api_key": key}

    def member_demoted() -> dict[str, Any]:
        user = world.users["supervisor"]
        Membership.objects.filter(user=user, organization=world.org).update(role=Role.VIEWER)
        return {"user": user}

    def member_off_the_team() -> dict[str, Any]:
        user = world.users["supervisor"]
        Membership.objects.get(user=user, organization=world.org).teams.through.objects.filter(
            membership__user=user
        ).delete()  # a bulk delete: no signal, like a change in flight
        return {"user": user}

    def pat_owner_deactivated() -> dict[str, Any]:
        user = world.users["supervisor"]
        pat = PersonalAccessToken.objects.get(user=user, name="all")
        type(user).objects.filter(pk=user.pk).update(is_active=False)
        return {"user": user, "personal_access_token": pat}

    return {
        "key_revoked": key_revoked,
        "member_demoted": member_demoted,
        "member_off_the_team": member_off_the_team,
        "pat_owner_deactivated": pat_owner_deactivated,
    }


@pytest.mark.parametrize(
    ("case", "via"),
    [
        ("key_revoked", "api"),
        ("member_demoted", "api"),
        ("pat_owner_deactivated", "api"),
        ("member_demoted", "portal"),  # the portal mints for signed-in users only
        ("member_off_the_team", "portal"),
    ],
)
def test_a_mint_that_lost_its_right_meanwhile_leaves_no_session(
    world: World, case: str, via: str
) -> None:
    from anyreach_listen.access import policy as access
    from anyreach_listen.api.errors import ApiError
    from anyreach_listen.listening.minting import grant_listen

    # The call as the views hand it over: found through the policy, with its annotations.
    conversation = access.for_user(world.users["supervisor"]).find(
        world.conversations["in_progress"].pk
    )
    assert conversation is not None
    audit = _stale(world)[case]()
    before = ListenSession.objects.count()
    with pytest.raises(ApiError) as refused:
        grant_listen(conversation, via=via, audit=audit)
    assert refused.value.kind.status in (401, 403)
    assert ListenSession.objects.count() == before


# --- LiveKit failures: retried with backoff, then the sweep (issue 11, item 4) -------------


def test_a_failed_removal_is_retried_with_backoff(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    import threading

    attempts: list[list[tuple[str, str]]] = []
    done = threading.Event()

    async def flaky(targets: Any) -> dict[str, bool | None]:
        attempts.append(list(targets))
        if len(attempts) < 3:
            return {identity: None for _, identity in targets}  # LiveKit failed
        done.set()
        return {identity: True for _, identity in targets}

    monkeypatch.setattr(revocation, "remove_listeners", flaky)
    monkeypatch.setattr(revocation, "RETRY_DELAYS", (0.01, 0.02, 0.04))
    session = mint_session(world, user=world.users["admin"])
    with django_capture_on_commit_callbacks(execute=True):
        revocation.stop_listener(session)
    assert done.wait(timeout=10), attempts
    assert attempts == [[("room-in_progress", session.listener_identity)]] * 3


def test_the_sweep_revokes_lost_rights_and_removes_revoked_listeners_still_in_rooms(
    world: World,
    removed: list[tuple[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    from anyreach_listen.access.roles import Role
    from anyreach_listen.models import Membership

    # A demotion that bypassed the signals (a bulk update), and a revoked listener
    # LiveKit still has in its room (its removal failed for good).
    lost = mint_session(world, user=world.users["supervisor"])
    Membership.objects.filter(user=world.users["supervisor"]).update(role=Role.VIEWER)
    lingering = mint_session(world, user=world.users["admin"])
    ListenSession.objects.filter(pk=lingering.pk).update(revoked_at=timezone.now())
    fine = mint_session(world, user=world.users["qa"])

    async def in_rooms(rooms: Any) -> dict[str, set[str]]:
        return {"room-in_progress": {lingering.listener_identity, fine.listener_identity}}

    monkeypatch.setattr(revocation, "list_listeners", in_rooms)
    with django_capture_on_commit_callbacks(execute=True):
        result = revocation.sweep()
    assert result == revocation.SweepResult(revoked=1, removed=1)
    assert sorted(removed) == sorted(
        [
            ("room-in_progress", lost.listener_identity),
            ("room-in_progress", lingering.listener_identity),
        ]
    )
    fine.refresh_from_db()
    assert fine.revoked_at is None
