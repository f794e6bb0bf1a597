"""access/policy.py, the transcript rule as a table: who may read which call's transcript.

Viewers never; admins, supervisors and QA analysts where they see the call (their
role's scopes include ``conversations:read_sensitive``), nobody outside the call's
organization. ``reads_transcripts_in`` is the per-socket form events use.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser, User

from anyreach_listen.access import policy as access
from tests.support.world import World

# person -> may read (own Support call, Acme's Sales call, Other's call)
TABLE = {
    "admin": (True, True, False),
    "supervisor": (True, False, False),
    "qa": (True, False, False),
    "viewer": (False, False, False),
    "outsider": (False, False, True),
    "nobody": (False, False, False),
    "anonymous": (False, False, False),
}


@pytest.mark.parametrize(("person", "expected"), TABLE.items())
def test_who_may_read_which_transcript(
    world: World, person: str, expected: tuple[bool, bool, bool]
) -> None:
    if person == "anonymous":
        user: User | AnonymousUser = AnonymousUser()
    elif person == "nobody":
        user = User.objects.create_user(username="nobody")
    else:
        user = world.users[person]
    policy = access.for_user(user)
    calls = [world.conversations[name] for name in ("in_progress", "other_team", "other_org")]
    assert tuple(policy.can_read_transcript(c) for c in calls) == expected
    for call, allowed in zip(calls, expected, strict=True):
        assert (policy.transcript_refusal(call) is None) is allowed


def test_refusals_say_why(world: World) -> None:
    own = world.conversations["in_progress"]
    viewer = access.for_user(world.users["viewer"]).transcript_refusal(own)
    assert viewer == "Your role can see this call but not read its transcript."
    sales = world.conversations["other_team"]
    assert "team" in str(access.for_user(world.users["qa"]).transcript_refusal(sales))
    assert "membership" in str(access.for_user(world.users["outsider"]).transcript_refusal(own))


def test_the_event_form_follows_the_role_without_a_query(
    world: World, django_assert_num_queries: object
) -> None:
    policies = {role: access.for_user(world.users[role]) for role in TABLE if role in world.users}
    for policy in policies.values():
        policy.memberships  # noqa: B018  (loaded once, as the consumer does)
    with django_assert_num_queries(0):  # type: ignore[operator]
        answers = {r: p.reads_transcripts_in(world.org.pk) for r, p in policies.items()}
    assert answers == {
        "admin": True,
        "supervisor": True,
        "qa": True,
        "viewer": False,
        "outsider": False,
    }
