"""Arguments shared by the operator commands (also the demo's): organizations, teams,
users, roles, scopes and expiries."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.utils import timezone

from anyreach_listen.access.roles import ALL_SCOPES, Role
from anyreach_listen.models import Organization, Team


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


def find_team(organization: Organization, value: str) -> Team:
    """A team of ``organization`` by name or id."""
    teams = organization.teams.all()
    team = teams.filter(name=value).first()
    if team is None:
        try:
            team = teams.filter(pk=uuid.UUID(value)).first()
        except ValueError:
            team = None
    if team is None:
        names = ", ".join(repr(t.name) for t in teams) or "none yet (manage.py create_team)"
        raise CommandError(
            f"{organization.name} has no team named {value!r} (nor with that id). Its teams: "
            f"{names}."
        )
    return team


def new_team(organization: Organization, name: str) -> Team:
    """A new team of ``organization`` named ``name``, validated (``CommandError``)."""
    team = Team(organization=organization, name=name)
    try:
        team.full_clean()
    except ValidationError as exc:
        raise CommandError(" ".join(exc.messages)) from None
    team.save()
    return team


def find_user(username: str, hint: str = "") -> Any:
    """A user by their username (the user model's USERNAME_FIELD); ``hint`` ends the
    error message."""
    model = get_user_model()
    user = model._default_manager.filter(**{model.USERNAME_FIELD: username}).first()
    if user is None:
        raise CommandError(f"No user {username!r}.{hint}")
    return user


def parse_role(value: str) -> str:
    if value not in Role.values:
        raise CommandError(f"Unknown role {value!r}. Known: {', '.join(Role.values)}.")
    return value


def parse_scopes(values: list[str]) -> list[str]:
    scopes = sorted({s for value in values for s in value.split(",") if s})
    unknown = sorted(set(scopes) - ALL_SCOPES)
    if unknown:
        raise CommandError(
            f"Unknown scopes: {', '.join(unknown)}. Known: {', '.join(sorted(ALL_SCOPES))}."
        )
    return scopes


MAX_EXPIRY_DAYS = 36_500


def expiry(days: int | None) -> dt.datetime | None:
    """``--expires-in-days``: that many days from now, or None (never) when not given."""
    if days is None:
        return None
    if not 1 <= days <= MAX_EXPIRY_DAYS:
        raise CommandError(f"--expires-in-days must be from 1 to {MAX_EXPIRY_DAYS}, not {days}.")
    return timezone.now() + dt.timedelta(days=days)
