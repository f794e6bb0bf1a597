"""The capability table (``access/roles.py``): what each API scope and each role may do.

The matrices below are written out by hand, as docs/supervisors.md's role tables say it: a change
to ``GRANTS`` fails here until this file says the same. A new capability fails
``test_the_matrices_name_every_capability`` until it has a column here.
"""

from __future__ import annotations

import pytest

from anyreach_listen.access import roles
from anyreach_listen.access.roles import Capability, Role, Scope
from anyreach_listen.api.errors import Errors
from anyreach_listen.api.permissions import Needs

COLUMNS = (
    Capability.VIEW_CALLS,
    Capability.LISTEN,
    Capability.READ_TRANSCRIPTS,
    Capability.WRITE_CALLS,
    Capability.MANAGE_RULES,
    Capability.MANAGE_ORGANIZATION,
    Capability.GUIDE_AGENT,
    Capability.SEE_LISTENERS,
    Capability.TAKE_OVER,
)

# fmt: off
SCOPE_ROWS: dict[str, tuple[int, ...]] = {
    #                      view listen transcripts write rules organization guide listeners takeover
    Scope.READ:           (1,   0,     0,          0,    0,    0,           0,    0,        0),
    Scope.READ_SENSITIVE: (1,   1,     1,          0,    0,    0,           0,    1,        0),
    Scope.MANAGE:         (1,   1,     1,          1,    1,    0,           0,    1,        0),
    Scope.GUIDE:          (0,   0,     0,          0,    0,    0,           1,    0,        0),
    Scope.TAKE_OVER:      (0,   0,     0,          0,    0,    0,           0,    0,        1),
}
ROLE_ROWS: dict[str, tuple[int, ...]] = {
    #                      view listen transcripts write rules organization guide listeners takeover
    Role.ADMIN:           (1,   1,     1,          1,    1,    1,           1,    1,        1),
    Role.SUPERVISOR:      (1,   1,     1,          0,    0,    0,           1,    1,        1),
    Role.QA:              (1,   1,     1,          0,    0,    0,           0,    1,        0),
    Role.VIEWER:          (1,   0,     0,          0,    0,    0,           0,    0,        0),
}
# fmt: on

# docs/supervisors.md's "Role to scope mapping": what a PAT of each role can at most use.
ROLE_SCOPES: dict[str, set[str]] = {
    Role.ADMIN: {Scope.READ, Scope.READ_SENSITIVE, Scope.MANAGE, Scope.GUIDE, Scope.TAKE_OVER},
    Role.SUPERVISOR: {Scope.READ, Scope.READ_SENSITIVE, Scope.GUIDE, Scope.TAKE_OVER},
    Role.QA: {Scope.READ, Scope.READ_SENSITIVE},
    Role.VIEWER: {Scope.READ},
}


def _cells(rows: dict[str, tuple[int, ...]]) -> list[tuple[str, Capability, bool]]:
    return [
        (who, capability, bool(cell))
        for who, row in rows.items()
        for capability, cell in zip(COLUMNS, row, strict=True)
    ]


def test_the_matrices_name_every_capability_scope_and_role() -> None:
    assert set(COLUMNS) == set(Capability) == set(roles.GRANTS)
    assert set(SCOPE_ROWS) == set(Scope) and set(ROLE_ROWS) == set(Role)


@pytest.mark.parametrize(("scope", "capability", "granted"), _cells(SCOPE_ROWS))
def test_what_each_scope_grants(scope: str, capability: Capability, granted: bool) -> None:
    assert (capability in roles.SCOPE_CAPABILITIES[scope]) is granted
    assert (capability in roles.capabilities_of([scope])) is granted
    assert (scope in roles.scopes_granting(capability)) is granted


@pytest.mark.parametrize(("role", "capability", "granted"), _cells(ROLE_ROWS))
def test_what_each_role_may_do(role: str, capability: Capability, granted: bool) -> None:
    assert (capability in roles.ROLE_CAPABILITIES[role]) is granted
    assert roles.role_has(role, capability) is granted
    assert (role in roles.roles_with(capability)) is granted


@pytest.mark.parametrize("role", list(Role))
def test_a_roles_scopes_are_those_whose_grants_it_has(role: str) -> None:
    assert roles.ROLE_SCOPES[role] == ROLE_SCOPES[role]
    # So a PAT, cut down to its owner's role, never does more than its owner.
    assert roles.capabilities_of(roles.ROLE_SCOPES[role]) <= roles.ROLE_CAPABILITIES[role]


def test_qa_keeps_read_sensitive_and_never_guides() -> None:
    """SEE_LISTENERS rides on read_sensitive, so QA must have it (else QA PATs lose the
    scope); guiding and taking calls over are for admins and supervisors only."""
    assert Scope.READ_SENSITIVE in roles.ROLE_SCOPES[Role.QA]
    assert roles.roles_with(Capability.GUIDE_AGENT) == {Role.ADMIN, Role.SUPERVISOR}
    assert roles.roles_with(Capability.TAKE_OVER) == {Role.ADMIN, Role.SUPERVISOR}


def test_whoever_may_listen_may_read_transcripts() -> None:
    """The listen panel shows the transcript to whoever may listen."""
    assert roles.roles_with(Capability.LISTEN) <= roles.roles_with(Capability.READ_TRANSCRIPTS)


@pytest.mark.parametrize(
    ("scopes", "capabilities"),
    [
        ([], set()),
        (["conversations:unknown", "admin"], set()),  # a role's name is no scope
        ([Scope.READ, "conversations:unknown"], {Capability.VIEW_CALLS}),
        (
            [Scope.READ, Scope.MANAGE],
            set(COLUMNS)
            - {Capability.MANAGE_ORGANIZATION, Capability.GUIDE_AGENT, Capability.TAKE_OVER},
        ),
        ([Scope.GUIDE], {Capability.GUIDE_AGENT}),  # guiding shows nothing of a call
        ([Scope.TAKE_OVER], {Capability.TAKE_OVER}),  # nor does taking it over
    ],
)
def test_a_credentials_capabilities_are_its_known_scopes_grants(
    scopes: list[str], capabilities: set[Capability]
) -> None:
    assert roles.capabilities_of(scopes) == capabilities


@pytest.mark.parametrize(("role", "may"), [(None, False), ("owner", False), (Role.QA, True)])
def test_no_role_or_an_unknown_one_has_nothing(role: str | None, may: bool) -> None:
    assert roles.role_has(role, Capability.VIEW_CALLS) is may


def test_the_listen_shortcuts_read_the_table() -> None:
    assert roles.LISTEN_ROLES == {Role.ADMIN, Role.SUPERVISOR, Role.QA}
    assert [s for s in Scope if roles.can_listen([s])] == [Scope.READ_SENSITIVE, Scope.MANAGE]


@pytest.mark.parametrize(
    ("capability", "refusal"),
    [
        (
            Capability.VIEW_CALLS,
            "Needs the conversations:read, conversations:read_sensitive or "
            "conversations:manage scope.",
        ),
        (Capability.LISTEN, Errors.INSUFFICIENT_SCOPE.message),
        (
            Capability.READ_TRANSCRIPTS,
            "Needs the conversations:read_sensitive or conversations:manage scope.",
        ),
        (Capability.WRITE_CALLS, "Needs the conversations:manage scope."),
        (Capability.MANAGE_RULES, "Needs the conversations:manage scope."),
        (Capability.GUIDE_AGENT, "Needs the conversations:guide scope."),
        (Capability.TAKE_OVER, "Needs the conversations:take_over scope."),
        (
            Capability.SEE_LISTENERS,
            "Needs the conversations:read_sensitive or conversations:manage scope.",
        ),
    ],
)
def test_the_apis_refusal_names_the_scopes_that_grant_the_need(
    capability: Capability, refusal: str
) -> None:
    assert Needs(capability).refusal == refusal


def test_an_api_need_no_scope_grants_is_refused_when_declared() -> None:
    with pytest.raises(ValueError, match="No API scope grants"):
        Needs(Capability.MANAGE_ORGANIZATION)
