"""The test world: two organizations, one user per role, credentials and calls.

``build_world()`` makes it in the test database; the ``world`` fixture in
``tests/conftest.py`` calls it. Builders only, no fixtures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.auth.models import User
from django.test import Client

from anyreach_listen.access.credentials import issue_api_key, issue_pat
from anyreach_listen.access.roles import Role, Scope
from anyreach_listen.models import (
    Conversation,
    ConversationStatus,
    Membership,
    Organization,
    Team,
)

TEST_LISTEN_SETTINGS = {
    "LIVEKIT_URL": "ws://127.0.0.1:7880",
    "LIVEKIT_API_KEY": "devkey",
    "LIVEKIT_API_SECRET": "test-secret-that-is-at-least-32-characters",
}


def password_of(username: str) -> str:
    """The password of the world's test users (fast MD5 hashing, test database only)."""
    return f"pw-{username}"


def login(client: Client, role: str) -> Client:
    """``client`` signed in as the world's user of that role."""
    assert client.login(username=role, password=password_of(role))
    return client


@dataclass
class World:
    org: Organization
    other_org: Organization
    team: Team
    other_team: Team
    users: dict[str, User] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    conversations: dict[str, Conversation] = field(default_factory=dict)


def make_conversation(
    org: Organization, team: Team | None, status: str, room: str | None
) -> Conversation:
    return Conversation.objects.create(
        organization=org,
        team=team,
        status=status,
        livekit_room=room,
        agent_label="Agent",
        caller_label="Caller",
    )


def build_world() -> World:
    """Acme (teams Support and Sales; one member per role, all in Support) and Other.

    Users are named after their role, plus ``outsider`` (admin of Other only).
    ``secrets`` holds a PAT per user (asking for every scope), a read-only PAT of
    the supervisor, and API keys of Acme and Other. ``conversations`` holds one
    Support call per status (room ``room-<status>``), a live call without a room,
    a live Sales call and a live call of Other.
    """
    org = Organization.objects.create(name="Acme", slug="acme")
    other_org = Organization.objects.create(name="Other", slug="other")
    team = Team.objects.create(organization=org, name="Support")
    other_team = Team.objects.create(organization=org, name="Sales")
    w = World(org=org, other_org=other_org, team=team, other_team=other_team)

    for role in Role:
        user = User.objects.create_user(username=role.value, password=password_of(role.value))
        Membership.objects.create(user=user, organization=org, role=role).teams.set([team])
        w.users[role.value] = user
        # Every PAT asks for everything; the role decides what it really gets.
        w.secrets[f"pat_{role.value}"] = issue_pat(user, "all", sorted(Scope.values))[1]
    outsider = User.objects.create_user(username="outsider", password="pw")
    Membership.objects.create(user=outsider, organization=other_org, role=Role.ADMIN)
    w.users["outsider"] = outsider
    w.secrets["pat_outsider"] = issue_pat(outsider, "all", sorted(Scope.values))[1]
    w.secrets["pat_supervisor_read_only"] = issue_pat(w.users["supervisor"], "read", [Scope.READ])[
        1
    ]

    w.secrets["ak_read_sensitive"] = issue_api_key(org, "rs", [Scope.READ_SENSITIVE])[1]
    w.secrets["ak_manage"] = issue_api_key(org, "m", [Scope.MANAGE])[1]
    w.secrets["ak_no_scope"] = issue_api_key(org, "none", [Scope.READ])[1]
    w.secrets["ak_other_org"] = issue_api_key(other_org, "x", [Scope.READ_SENSITIVE])[1]

    for status in ConversationStatus.values:
        w.conversations[status] = make_conversation(org, team, status, f"room-{status}")
    w.conversations["no_room"] = make_conversation(org, team, ConversationStatus.IN_PROGRESS, None)
    w.conversations["other_team"] = make_conversation(
        org, other_team, ConversationStatus.IN_PROGRESS, "room-other-team"
    )
    w.conversations["other_org"] = make_conversation(
        other_org, None, ConversationStatus.IN_PROGRESS, "room-other-org"
    )
    return w
