"""Organization roles, API scopes, and what each role grants.

The mapping is the single source of truth for the API (a PAT's effective
scopes), the portal (who sees listen controls) and the README's matrix.
"""

from __future__ import annotations

from django.db import models


class Scope(models.TextChoices):
    READ = "conversations:read", "List conversations"
    READ_SENSITIVE = "conversations:read_sensitive", "Listen and read transcripts"
    MANAGE = "conversations:manage", "Manage conversations (includes listening)"


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    SUPERVISOR = "supervisor", "Supervisor"
    QA = "qa", "QA analyst"
    VIEWER = "viewer", "Viewer"


ROLE_SCOPES: dict[str, frozenset[str]] = {
    Role.ADMIN: frozenset({Scope.READ, Scope.READ_SENSITIVE, Scope.MANAGE}),
    Role.SUPERVISOR: frozenset({Scope.READ, Scope.READ_SENSITIVE}),
    Role.QA: frozenset({Scope.READ, Scope.READ_SENSITIVE}),
    Role.VIEWER: frozenset({Scope.READ}),
}

# Either scope lets a credential mint a listener token (the contract).
LISTEN_SCOPES: frozenset[str] = frozenset({Scope.READ_SENSITIVE, Scope.MANAGE})

ALL_SCOPES: frozenset[str] = frozenset(Scope.values)


def can_listen(scopes: frozenset[str] | set[str]) -> bool:
    return bool(LISTEN_SCOPES & set(scopes))


# Roles whose scopes let their members listen (the SQL side of ``can_listen``).
LISTEN_ROLES: frozenset[str] = frozenset(
    r for r, scopes in ROLE_SCOPES.items() if can_listen(scopes)
)
