"""The access policy (``access/policy.py``) as tables: who sees and may listen to which call.

Rows are people (by role, an admin of another organization, a user with no membership,
an anonymous visitor) and API callers (API keys with and without a listen scope, a PAT
per role); columns are the world's three live calls: ``own`` (Acme's Support call; every
Acme member is in Support), ``other_team`` (Acme's Sales call) and ``other_org`` (a call
of the organization Other). Each cell is (sees, may listen).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet
from django.test import Client, RequestFactory

from anyreach_listen.access import policy as access
from anyreach_listen.access.credentials import parse
from anyreach_listen.access.policy import CredentialAccess, UserAccess
from anyreach_listen.access.roles import Role, Scope
from anyreach_listen.api.errors import ApiError, Errors
from anyreach_listen.models import (
    ApiKey,
    Conversation,
    ConversationStatus,
    Membership,
    PersonalAccessToken,
    Team,
)
from tests.support.world import World, login, make_conversation

COLUMNS = ("own", "other_team", "other_org")
CONVERSATION_OF = {"own": "in_progress", "other_team": "other_team", "other_org": "other_org"}

YES = (True, True)  # sees, may listen
SEES = (True, False)
NO = (False, False)

# --- people --------------------------------------------------------------------------------

# row: (sees, may listen) for own, other_team, other_org
PEOPLE: dict[str, tuple[tuple[bool, bool], ...]] = {
    "admin": (YES, YES, NO),
    "supervisor": (YES, NO, NO),
    "qa": (YES, NO, NO),
    "viewer": (SEES, NO, NO),
    "outsider": (NO, NO, YES),  # admin of Other, not a member of Acme
    "non_member": (NO, NO, NO),  # signed in, no membership anywhere
    "anonymous": (NO, NO, NO),
}

PEOPLE_CELLS = [
    (person, column, expected)
    for person, row in PEOPLE.items()
    for column, expected in zip(COLUMNS, row, strict=True)
]


def person(world: World, name: str) -> User | AnonymousUser:
    if name == "anonymous":
        return AnonymousUser()
    if name == "non_member":
        return User.objects.create_user("non_member")
    return world.users[name]


def fresh(world: World, column: str) -> Conversation:
    """The call as a plain row (no viewer annotations): the policy must look it up."""
    return Conversation.objects.get(pk=world.conversations[CONVERSATION_OF[column]].pk)


@pytest.mark.parametrize(("name", "column", "expected"), PEOPLE_CELLS)
def test_people_table(world: World, name: str, column: str, expected: tuple[bool, bool]) -> None:
    policy = access.for_user(person(world, name))
    conversation = fresh(world, column)
    sees, may_listen = expected

    assert (conversation in policy.conversations()) is sees
    found = policy.find(conversation.pk)
    assert found == conversation if sees else found is None, found
    assert (policy.find(str(conversation.pk)) is not None) is sees  # ids arrive as strings
    assert policy.can_listen(conversation) is may_listen
    assert (policy.listen_refusal(conversation) is None) is may_listen
    if found is not None:  # a row of conversations() answers the same
        assert policy.can_listen(found) is may_listen


def test_people_table_covers_every_role() -> None:
    assert {r.value for r in Role} <= set(PEOPLE)


@pytest.mark.parametrize(
    ("name", "column", "refusal"),
    [
        ("viewer", "own", "Your role can see this call but not listen to it."),
        ("supervisor", "other_team", "This call belongs to a team you are not part of."),
        ("supervisor", "other_org", "Listening needs a membership of this organization"),
        ("non_member", "own", "Listening needs a membership of this organization"),
        ("anonymous", "own", "Listening needs a membership of this organization"),
        ("outsider", "own", "Listening needs a membership of this organization"),
    ],
)
def test_listen_refusals_say_why(world: World, name: str, column: str, refusal: str) -> None:
    message = access.for_user(person(world, name)).listen_refusal(fresh(world, column))
    assert message is not None and message.startswith(refusal)


@pytest.mark.parametrize(
    ("name", "manages"),
    [
        ("admin", {"org"}),
        ("supervisor", set()),
        ("qa", set()),
        ("viewer", set()),
        ("outsider", {"other_org"}),
        ("non_member", set()),
        ("anonymous", set()),
    ],
)
def test_who_manages_which_organization(world: World, name: str, manages: set[str]) -> None:
    policy = access.for_user(person(world, name))
    orgs = {"org": world.org.pk, "other_org": world.other_org.pk}
    assert policy.admin_organization_ids == frozenset(orgs[o] for o in manages)
    for label, org_id in orgs.items():
        assert policy.can_manage(org_id) is (label in manages)


@pytest.mark.parametrize("conversation_id", ["not-a-uuid", "", None, 42])
def test_find_refuses_what_is_not_a_uuid(world: World, conversation_id: Any) -> None:
    assert access.for_user(world.users["admin"]).find(conversation_id) is None


def test_find_of_an_unknown_uuid_is_none(world: World) -> None:
    import uuid

    assert access.for_user(world.users["admin"]).find(uuid.uuid4()) is None


def test_user_audit_fields(world: World) -> None:
    assert access.for_user(world.users["qa"]).audit_fields == {"user": world.users["qa"]}
    assert access.for_user(AnonymousUser()).audit_fields == {"user": None}


def test_for_request_builds_the_policy_once_per_request_and_user(world: World) -> None:
    request = RequestFactory().get("/")
    request.user = world.users["supervisor"]
    policy = access.for_request(request)
    assert isinstance(policy, UserAccess) and policy.user is world.users["supervisor"]
    assert access.for_request(request) is policy
    request.user = world.users["admin"]  # e.g. login() on the same request
    other = access.for_request(request)
    assert other is not policy and other.user is world.users["admin"]


def test_a_policy_reads_memberships_once(
    world: World, django_assert_num_queries: Callable[..., Any]
) -> None:
    policy = access.for_user(world.users["supervisor"])
    rows = list(policy.conversations())
    with django_assert_num_queries(1):  # the memberships, then cached
        for _ in range(3):
            policy.admin_organization_ids  # noqa: B018
            [policy.can_listen(c) for c in rows]
            policy.can_manage(world.org.pk)


# --- API callers ---------------------------------------------------------------------------

# credential (a key of World.secrets), X-Anyreach-Org ("org", "other_org" or None)
CALLERS: dict[str, tuple[str, str | None]] = {
    "api key, read_sensitive": ("ak_read_sensitive", None),
    "api key, manage": ("ak_manage", None),
    "api key, no listen scope": ("ak_no_scope", None),
    "api key of Other": ("ak_other_org", None),
    "pat admin": ("pat_admin", "org"),
    "pat supervisor": ("pat_supervisor", "org"),
    "pat qa": ("pat_qa", "org"),
    "pat viewer": ("pat_viewer", "org"),
    "pat supervisor, read only": ("pat_supervisor_read_only", "org"),
    "pat outsider in Other": ("pat_outsider", "other_org"),
}

API_TABLE: dict[str, tuple[tuple[bool, bool], ...]] = {
    "api key, read_sensitive": (YES, YES, NO),  # a key sees its whole organization
    "api key, manage": (YES, YES, NO),
    "api key, no listen scope": (SEES, SEES, NO),
    "api key of Other": (NO, NO, YES),
    "pat admin": (YES, YES, NO),  # a PAT sees what its owner sees
    "pat supervisor": (YES, NO, NO),
    "pat qa": (YES, NO, NO),
    "pat viewer": (SEES, NO, NO),  # asked for every scope; the role grants read only
    "pat supervisor, read only": (SEES, NO, NO),
    "pat outsider in Other": (NO, NO, YES),
}

EFFECTIVE_SCOPES: dict[str, set[str]] = {
    "api key, read_sensitive": {Scope.READ_SENSITIVE},
    "api key, manage": {Scope.MANAGE},
    "api key, no listen scope": {Scope.READ},
    "api key of Other": {Scope.READ_SENSITIVE},
    "pat admin": {Scope.READ, Scope.READ_SENSITIVE, Scope.MANAGE, Scope.GUIDE, Scope.TAKE_OVER},
    "pat supervisor": {Scope.READ, Scope.READ_SENSITIVE, Scope.GUIDE, Scope.TAKE_OVER},
    "pat qa": {Scope.READ, Scope.READ_SENSITIVE},
    "pat viewer": {Scope.READ},
    "pat supervisor, read only": {Scope.READ},
    "pat outsider in Other": {
        Scope.READ,
        Scope.READ_SENSITIVE,
        Scope.MANAGE,
        Scope.GUIDE,
        Scope.TAKE_OVER,
    },
}

API_CELLS = [
    (caller, column, expected)
    for caller, row in API_TABLE.items()
    for column, expected in zip(COLUMNS, row, strict=True)
]


def caller_for(world: World, secret: str, org: str | None) -> CredentialAccess:
    headers = {"Authorization": f"Bearer {secret}"}
    if org is not None:
        headers["X-Anyreach-Org"] = str(getattr(world, org).pk)
    return access.for_api_request(RequestFactory().post("/", headers=headers))


def credential_row(world: World, name: str) -> ApiKey | PersonalAccessToken:
    presented = parse(world.secrets[name])
    assert presented is not None
    model = ApiKey if presented.kind == "ak" else PersonalAccessToken
    return model.objects.get(lookup_id=presented.lookup_id)


@pytest.mark.parametrize(("name", "column", "expected"), API_CELLS)
def test_api_table(world: World, name: str, column: str, expected: tuple[bool, bool]) -> None:
    secret, org = CALLERS[name]
    caller = caller_for(world, world.secrets[secret], org)
    conversation = fresh(world, column)
    sees, may_listen = expected

    assert (conversation in caller.conversations()) is sees
    found = caller.find(conversation.pk)
    assert found == conversation if sees else found is None, found
    # The API mints when the caller finds the call and holds a listen scope.
    assert (found is not None and caller.can_listen) is may_listen


def test_api_tables_have_the_same_rows() -> None:
    assert set(CALLERS) == set(API_TABLE) == set(EFFECTIVE_SCOPES)


@pytest.mark.parametrize("name", list(CALLERS))
def test_effective_scopes_and_audit_fields(world: World, name: str) -> None:
    secret, org = CALLERS[name]
    caller = caller_for(world, world.secrets[secret], org)
    row = credential_row(world, secret)
    assert caller.credential == row
    assert caller.scopes == frozenset(EFFECTIVE_SCOPES[name])
    assert caller.organization == (getattr(world, org) if org else row.organization)  # type: ignore[union-attr]
    assert caller.rate_limit_bucket == f"{row.PREFIX}:{row.pk}"
    if isinstance(row, PersonalAccessToken):
        assert caller.audit_fields == {"user": row.user, "personal_access_token": row}
    else:
        assert caller.audit_fields == {"api_key": row}


@pytest.mark.parametrize(
    ("authorization", "secret", "org", "error"),
    [
        (None, None, None, Errors.MISSING_CREDENTIALS),
        ("", None, None, Errors.MISSING_CREDENTIALS),
        ("Basic dXNlcjpwYXNz", None, None, Errors.INVALID_CREDENTIALS),
        ("Bearer ", None, None, Errors.INVALID_CREDENTIALS),
        ("Bearer not-a-token", None, None, Errors.INVALID_CREDENTIALS),
        ("Bearer {}", "ak_read_sensitive", "garbage", Errors.INVALID_ORGANIZATION),
        ("Bearer {}", "ak_read_sensitive", "other_org", Errors.ORGANIZATION_MISMATCH),
        ("Bearer {}", "pat_supervisor", None, Errors.MISSING_ORGANIZATION),
        ("Bearer {}", "pat_supervisor", "garbage", Errors.INVALID_ORGANIZATION),
        ("Bearer {}", "pat_supervisor", "other_org", Errors.NOT_A_MEMBER),
        ("Bearer {}", "pat_outsider", "org", Errors.NOT_A_MEMBER),
    ],
)
def test_api_callers_refused(
    world: World, authorization: str | None, secret: str | None, org: str | None, error: Any
) -> None:
    headers: dict[str, str] = {}
    if authorization is not None:
        headers["Authorization"] = authorization.format(world.secrets[secret] if secret else "")
    if org is not None:
        headers["X-Anyreach-Org"] = (
            "not-a-uuid" if org == "garbage" else str(getattr(world, org).pk)
        )
    with pytest.raises(ApiError) as refused:
        access.for_api_request(RequestFactory().post("/", headers=headers))
    assert refused.value.kind is error


def test_bearer_scheme_is_case_insensitive(world: World) -> None:
    request = RequestFactory().post(
        "/", headers={"Authorization": f"bearer {world.secrets['ak_manage']}"}
    )
    assert access.for_api_request(request).scopes == frozenset({Scope.MANAGE})


def test_an_api_key_may_name_its_own_organization(world: World) -> None:
    caller = caller_for(world, world.secrets["ak_read_sensitive"], "org")
    assert caller.organization == world.org


# --- the visibility rule: one SQL expression, rows carry the viewer's role ----------------


def _rows(conversations: QuerySet[Conversation]) -> list[dict[str, Any]]:
    """The rows a queryset gives, annotations (the viewer's role) included, in one order."""
    return [dict(row) for row in conversations.order_by("pk").values()]


def test_the_user_policy_gives_the_rows_of_the_visibility_expression(world: World) -> None:
    user = world.users["supervisor"]
    expected = _rows(Conversation.objects.visible_to(user.pk))
    # Not every call: the supervisor's team's only, with Sales and Other left out.
    assert 0 < len(expected) < Conversation.objects.count()
    assert _rows(access.for_user(user).conversations()) == expected


def test_a_pat_policy_gives_the_rows_narrowed_to_its_organization(world: World) -> None:
    # The supervisor is a member of Other too: the PAT names Acme, so Other's calls stay out.
    Membership.objects.create(
        user=world.users["supervisor"], organization=world.other_org, role=Role.ADMIN
    )
    caller = caller_for(world, world.secrets["pat_supervisor"], "org")
    expected = _rows(Conversation.objects.visible_to(world.users["supervisor"].pk, world.org.pk))
    everywhere = _rows(Conversation.objects.visible_to(world.users["supervisor"].pk))
    assert 0 < len(expected) < len(everywhere)
    assert _rows(caller.conversations()) == expected


def test_visible_conversations_are_one_query_whatever_the_roles(
    world: World, django_assert_num_queries: Callable[..., Any]
) -> None:
    user = world.users["supervisor"]
    with django_assert_num_queries(1):
        rows = list(Conversation.objects.visible_to(user.pk))
    assert rows


@pytest.mark.parametrize("role", [r.value for r in Role])
def test_rows_carry_the_viewers_role(world: World, role: str) -> None:
    user = world.users[role]
    rows = list(access.for_user(user).conversations())
    assert rows
    assert {(c.viewer_role, c.viewer_id) for c in rows} == {(role, user.pk)}  # type: ignore[attr-defined]


def test_the_role_is_per_organization(
    world: World, django_assert_num_queries: Callable[..., Any]
) -> None:
    """A supervisor of Acme who is also a viewer in Other: each row has its own role."""
    user = world.users["supervisor"]
    ops = Team.objects.create(organization=world.other_org, name="Ops")
    Membership.objects.create(user=user, organization=world.other_org, role=Role.VIEWER).teams.set(
        [ops]
    )
    theirs = make_conversation(world.other_org, ops, ConversationStatus.IN_PROGRESS, "room-ops")
    policy = access.for_user(user)
    rows = {c.pk: c for c in policy.conversations()}
    assert rows[theirs.pk].viewer_role == Role.VIEWER  # type: ignore[attr-defined]
    own = rows[world.conversations["in_progress"].pk]
    assert own.viewer_role == Role.SUPERVISOR  # type: ignore[attr-defined]
    assert world.conversations["other_org"].pk not in rows  # not Ops: still invisible
    policy.memberships  # noqa: B018  (load once)
    with django_assert_num_queries(0):  # the role comes with the row
        assert policy.can_listen(own) is True
        assert policy.can_listen(rows[theirs.pk]) is False


# --- a team of another organization attached to a membership grants nothing ---------------


@pytest.fixture
def foreign_team(world: World) -> Team:
    """Legacy bad data: Other's team hangs on the supervisor's Acme membership and
    Other's live call belongs to that team."""
    foreign = Team.objects.create(organization=world.other_org, name="Ops")
    Conversation.objects.filter(pk=world.conversations["other_org"].pk).update(team=foreign)
    membership = Membership.objects.get(user=world.users["supervisor"], organization=world.org)
    Membership.teams.through.objects.create(membership=membership, team=foreign)  # past the guard
    return foreign


def _foreign_call(world: World) -> Conversation:
    return Conversation.objects.get(pk=world.conversations["other_org"].pk)


def test_a_foreign_team_grants_nothing_to_the_person(world: World, foreign_team: Team) -> None:
    policy = access.for_user(world.users["supervisor"])
    call = _foreign_call(world)
    assert call.team == foreign_team
    assert call not in policy.conversations()
    assert policy.find(call.pk) is None
    assert policy.can_listen(call) is False
    assert call not in Conversation.objects.visible_to(world.users["supervisor"].pk)


def test_a_foreign_team_grants_nothing_to_the_pat(world: World, foreign_team: Team) -> None:
    caller = caller_for(world, world.secrets["pat_supervisor"], "org")
    assert caller.find(_foreign_call(world).pk) is None


def test_a_foreign_team_grants_nothing_even_to_a_member_of_its_organization(
    world: World, foreign_team: Team
) -> None:
    """Membership in Other (without Ops) does not pick up the team hung on Acme's."""
    Membership.objects.create(
        user=world.users["supervisor"], organization=world.other_org, role=Role.SUPERVISOR
    )
    policy = access.for_user(world.users["supervisor"])
    call = _foreign_call(world)
    assert call not in policy.conversations()
    assert policy.can_listen(call) is False
    assert policy.listen_refusal(call) == "This call belongs to a team you are not part of."
    caller = caller_for(world, world.secrets["pat_supervisor"], "other_org")
    assert caller.find(call.pk) is None


def test_another_organizations_call_on_your_team_stays_invisible(world: World) -> None:
    """Bad data the other way round: Other's live call names Acme's team. Acme's
    supervisor of that team neither sees it (SQL rule, events, pages) nor may listen."""
    call = Conversation.objects.create(
        organization=world.other_org,
        team=world.team,
        status=ConversationStatus.IN_PROGRESS,
        livekit_room="room-foreign-on-acme-team",
        caller_label="Foreign caller",
    )
    supervisor = world.users["supervisor"]
    policy = access.for_user(supervisor)
    assert call not in policy.conversations()
    assert policy.sees(call.organization_id, call.team_id) is False
    assert policy.can_listen(call) is False
    assert caller_for(world, world.secrets["pat_supervisor"], "org").find(call.pk) is None

    client = login(Client(), "supervisor")
    for page in ("/", "/?status=all", "/wall/", "/history/"):
        response = client.get(page)
        assert response.status_code == 200, page
        assert "Foreign caller" not in response.content.decode(), page
    assert client.get(f"/conversations/{call.pk}/").status_code == 404
    assert client.get(f"/wall/tiles/{call.pk}/").status_code == 404


@pytest.mark.django_db
def test_sees_is_visible_to_row_by_row(world: World) -> None:
    """The in-memory form of the rule (events) agrees with the SQL one everywhere."""
    from anyreach_listen.models import Membership, Team

    # Legacy bad data too: another organization's team attached to a membership.
    foreign = Team.objects.create(organization=world.other_org, name="Ops")
    membership = Membership.objects.get(user=world.users["supervisor"], organization=world.org)
    Membership.teams.through.objects.create(membership=membership, team=foreign)
    Conversation.objects.create(organization=world.other_org, team=foreign, status="in_progress")
    Conversation.objects.create(organization=world.other_org, team=world.team, status="ringing")
    everyone = list(world.users.values())
    for user in everyone:
        policy = access.for_user(user)
        visible = set(policy.conversations().values_list("pk", flat=True))
        for conversation in Conversation.objects.all():
            sees = policy.sees(conversation.organization_id, conversation.team_id)
            assert sees == (conversation.pk in visible), (user.username, conversation)
