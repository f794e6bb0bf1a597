"""Arguments shared by the operator commands (also the demo's): organizations and scopes."""

from __future__ import annotations

import uuid

from django.core.management.base import CommandError

from anyreach_listen.models import Organization
from anyreach_listen.roles import ALL_SCOPES


def find_organization(value: str, hint: str = "") -> Organization:
    """An organization by slug or id; ``hint`` ends the error message."""
    org = Organization.objects.filter(slug=value).first()
    if org is None:
        try:
            org = Organization.objects.filter(pk=uuid.UUID(value)).first()
        except ValueError:
            org = None
    if org is None:
        raise CommandError(f"No organization with slug or id {value!r}.{hint}")
    return org


def parse_scopes(values: list[str]) -> list[str]:
    scopes = sorted({s for value in values for s in value.split(",") if s})
    unknown = sorted(set(scopes) - ALL_SCOPES)
    if unknown:
        raise CommandError(
            f"Unknown scopes: {', '.join(unknown)}. Known: {', '.join(sorted(ALL_SCOPES))}."
        )
    return scopes
