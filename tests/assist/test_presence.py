"""assist/presence.py: the listeners in a call's room now, and how pages name them."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from anyreach_listen.access import policy
from anyreach_listen.access.roles import Capability
from anyreach_listen.assist import presence
from anyreach_listen.listening import sessions
from anyreach_listen.models import Conversation, ListenSession, ListenVia
from tests.support.world import World

pytestmark = pytest.mark.django_db


def minted(
    call: Conversation, name: str, via: str = ListenVia.PORTAL, **audit: object
) -> ListenSession:
    return sessions.create(
        call, identity=f"listener-{name}", via=via,
        expires_at=timezone.now() + dt.timedelta(hours=1), audit=audit,
    )  # fmt: skip


def test_only_those_in_the_room_now_in_join_order(world: World) -> None:
    call = world.conversations["in_progress"]
    now = timezone.now()
    ana = minted(call, "ana", user=world.users["supervisor"])
    ben = minted(call, "ben", ListenVia.API, api_key=world.org.api_keys.get(name="rs"))
    left = minted(call, "left", user=world.users["admin"])
    revoked = minted(call, "revoked", user=world.users["qa"])
    minted(call, "never-joined", user=world.users["qa"])
    minted(world.conversations["other_team"], "elsewhere", user=world.users["admin"])
    sessions.join(ben, now)
    sessions.join(ana, now + dt.timedelta(seconds=1))
    for session in (left, revoked):
        sessions.join(session, now - dt.timedelta(seconds=5))
    sessions.leave(left, now)
    sessions.revoke(ListenSession.objects.filter(pk=revoked.pk))
    assert [s.pk for s in presence.listeners_now(call)] == [ben.pk, ana.pk]


def test_an_ended_call_has_no_listeners_now(world: World) -> None:
    # As ListenSession.objects.live() has it: a call that ended holds no one, whatever
    # webhooks were missed.
    call = world.conversations["completed"]
    sessions.join(minted(call, "late", user=world.users["supervisor"]), timezone.now())
    assert presence.listeners_now(call) == []


def test_a_person_by_full_name_else_username_an_api_caller_by_its_credential(
    world: World,
) -> None:
    call = world.conversations["in_progress"]
    supervisor = world.users["supervisor"]
    assert presence.display_name(minted(call, "a", user=supervisor)) == "supervisor"
    supervisor.first_name, supervisor.last_name = "Ana", "Ruiz"
    supervisor.save()
    assert presence.display_name(minted(call, "b", user=supervisor)) == "Ana Ruiz"
    key = world.org.api_keys.get(name="rs")
    api_session = minted(call, "c", ListenVia.API, api_key=key)
    assert presence.display_name(api_session) == f"API key {key}"
    pat = supervisor.listen_pats.get(name="all")
    via_pat = minted(call, "d", ListenVia.API, user=supervisor, personal_access_token=pat)
    assert presence.display_name(via_pat) == f"PAT {pat}"


@pytest.mark.parametrize(
    ("role", "own_team", "other_team"),
    [
        ("admin", True, True),  # admins see every team's calls
        ("supervisor", True, False),
        ("qa", True, False),
        ("viewer", False, False),
        ("outsider", False, False),  # another organization's admin
    ],
)
def test_who_may_see_a_calls_listeners_and_guide_its_agent_in_the_portal(
    world: World, role: str, own_team: bool, other_team: bool
) -> None:
    user_access = policy.for_user(world.users[role])
    own, other = world.conversations["in_progress"], world.conversations["other_team"]
    assert user_access.can_on(Capability.SEE_LISTENERS, own) is own_team
    assert user_access.can_on(Capability.SEE_LISTENERS, other) is other_team
    guides = role in ("admin", "supervisor")
    assert user_access.can_on(Capability.GUIDE_AGENT, own) is (own_team and guides)
    assert user_access.can_on(Capability.GUIDE_AGENT, other) is (other_team and guides)
