"""Organization roles, API scopes, and what each may do: the capability table.

``GRANTS`` is the single source of truth: per capability, the API scopes that grant
it and the portal roles that have it. The API's permission checks, the access policy,
the portal and a PAT's ceiling (``ROLE_SCOPES``) all read it. The table lives here,
with the roles and scopes it names, so that importers of ``ROLE_SCOPES``,
``LISTEN_ROLES`` and ``can_listen`` get values derived from it without an import cycle.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import models


class Scope(models.TextChoices):
    READ = "conversations:read", "List conversations"
    READ_SENSITIVE = "conversations:read_sensitive", "Listen and read transcripts"
    MANAGE = "conversations:manage", "Manage conversations (includes listening)"
    GUIDE = "conversations:guide", "Guide the AI agent of live calls"
    TAKE_OVER = "conversations:take_over", "Take live calls over from the AI agent"


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    SUPERVISOR = "supervisor", "Supervisor"
    QA = "qa", "QA analyst"
    VIEWER = "viewer", "Viewer"


class Capability(models.TextChoices):
    """What a person or API caller may do; ``GRANTS`` says who may."""

    VIEW_CALLS = "view_calls", "See calls and their state"
    LISTEN = "listen", "Listen to live calls"
    READ_TRANSCRIPTS = "read_transcripts", "Read transcripts and alerts"
    WRITE_CALLS = "write_calls", "Register and update calls, push transcripts"
    MANAGE_RULES = "manage_rules", "Manage alert rules"
    MANAGE_ORGANIZATION = "manage_organization", "Manage members and API keys, read the audit"
    GUIDE_AGENT = "guide_agent", "Send guidance to a live call's AI agent"
    SEE_LISTENERS = "see_listeners", "See who is listening to a call now"
    TAKE_OVER = "take_over", "Take a live call over from its AI agent, and hand it back"


_READ, _SENSITIVE, _MANAGE = Scope.READ, Scope.READ_SENSITIVE, Scope.MANAGE
_GUIDE, _TAKE_OVER = Scope.GUIDE, Scope.TAKE_OVER
_ADMIN, _SUPERVISOR, _QA, _VIEWER = Role.ADMIN, Role.SUPERVISOR, Role.QA, Role.VIEWER

# The table: capability -> ({API scopes that grant it}, {portal roles that have it}).
# A new capability is its member above and one row here. Read it through the frozen
# views below, never mutate it.
GRANTS: dict[Capability, tuple[set[Scope], set[Role]]] = {
    Capability.VIEW_CALLS: ({_READ, _SENSITIVE, _MANAGE}, {_ADMIN, _SUPERVISOR, _QA, _VIEWER}),
    Capability.LISTEN: ({_SENSITIVE, _MANAGE}, {_ADMIN, _SUPERVISOR, _QA}),
    Capability.READ_TRANSCRIPTS: ({_SENSITIVE, _MANAGE}, {_ADMIN, _SUPERVISOR, _QA}),
    Capability.WRITE_CALLS: ({_MANAGE}, {_ADMIN}),
    Capability.MANAGE_RULES: ({_MANAGE}, {_ADMIN}),
    Capability.MANAGE_ORGANIZATION: (set(), {_ADMIN}),  # the portal only: no API endpoint
    Capability.GUIDE_AGENT: ({_GUIDE}, {_ADMIN, _SUPERVISOR}),
    # QA too: a role holds a scope only if it has all the scope grants (ROLE_SCOPES), so
    # leaving QA out would take read_sensitive from QA analysts' PATs.
    Capability.SEE_LISTENERS: ({_SENSITIVE, _MANAGE}, {_ADMIN, _SUPERVISOR, _QA}),
    Capability.TAKE_OVER: ({_TAKE_OVER}, {_ADMIN, _SUPERVISOR}),
}

SCOPE_CAPABILITIES: dict[str, frozenset[Capability]] = {
    scope: frozenset(c for c, (scopes, _) in GRANTS.items() if scope in scopes) for scope in Scope
}
ROLE_CAPABILITIES: dict[str, frozenset[Capability]] = {
    role: frozenset(c for c, (_, roles) in GRANTS.items() if role in roles) for role in Role
}

ALL_SCOPES: frozenset[str] = frozenset(Scope.values)

# A role holds a scope when it may do all the scope grants: a PAT's scopes are cut
# down to these (``Membership.scopes``), so a PAT never does more than its owner.
ROLE_SCOPES: dict[str, frozenset[str]] = {
    role: frozenset(s for s in Scope if SCOPE_CAPABILITIES[s] <= ROLE_CAPABILITIES[role])
    for role in Role
}


def capabilities_of(scopes: Iterable[str]) -> frozenset[Capability]:
    """What a credential holding ``scopes`` may do; unknown scopes grant nothing."""
    return frozenset(c for s in scopes for c in SCOPE_CAPABILITIES.get(s, ()))


def role_has(role: str | None, capability: Capability) -> bool:
    return role is not None and capability in ROLE_CAPABILITIES.get(role, frozenset())


def roles_with(capability: Capability) -> frozenset[str]:
    return frozenset(GRANTS[capability][1])


def scopes_granting(capability: Capability) -> list[Scope]:
    """The scopes that grant ``capability``, in ``Scope``'s order (the API's wording)."""
    return [s for s in Scope if s in GRANTS[capability][0]]


def can_listen(scopes: Iterable[str]) -> bool:
    return Capability.LISTEN in capabilities_of(scopes)


# Roles whose members may listen: the SQL side of ``role_has(role, LISTEN)``.
LISTEN_ROLES: frozenset[str] = roles_with(Capability.LISTEN)
