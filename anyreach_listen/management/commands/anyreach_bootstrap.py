"""``manage.py anyreach_bootstrap --user USERNAME``: a new site's setup in one idempotent step.

It makes what a new site needs to call the API and listen: an organization, a team in it,
an admin membership for the user and a ``conversations:manage`` API key. Run again, it
reuses all of them and mints no second key unless ``--new-key`` asks. Options, reuse rules
and the ``--json`` output: docs/operations/commands.md.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_slug
from django.db import transaction
from django.utils.text import slugify

from anyreach_listen.access.credentials import issue_api_key
from anyreach_listen.access.roles import Role, Scope
from anyreach_listen.management.arguments import find_user, new_team
from anyreach_listen.models import ApiKey, Membership, Organization, Team

DEFAULT_ORGANIZATION = "Default"
DEFAULT_TEAM = "Default"
DEFAULT_KEY_NAME = "bootstrap"


class Command(BaseCommand):
    help = (
        "Set up an organization, a team, an admin membership for a user and a "
        "conversations:manage API key; reuses what exists (idempotent) and prints what it "
        "made or reused."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--user", required=True, metavar="USERNAME", help="The organization's admin."
        )
        parser.add_argument(
            "--create-user",
            action="store_true",
            help="Create the user if missing, with a generated password printed once.",
        )
        parser.add_argument(
            "--organization",
            default=DEFAULT_ORGANIZATION,
            metavar="NAME",
            help=f"The organization's name (default {DEFAULT_ORGANIZATION!r}); found again "
            "by its slug.",
        )
        parser.add_argument("--slug", help="Defaults to the slugified name.")
        parser.add_argument(
            "--team", default=DEFAULT_TEAM, metavar="NAME", help=f"Default {DEFAULT_TEAM!r}."
        )
        parser.add_argument(
            "--key-name",
            default=DEFAULT_KEY_NAME,
            help=f"The API key's name (default {DEFAULT_KEY_NAME!r}); a live key of that "
            "name is reused.",
        )
        parser.add_argument(
            "--new-key",
            action="store_true",
            help="Mint another key even if one of that name exists (the old one keeps "
            "working: manage.py revoke_api_key).",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            dest="as_json",
            help="Print one JSON object (for scripts).",
        )

    def handle(
        self,
        *args: Any,
        user: str,
        create_user: bool,
        organization: str,
        slug: str | None,
        team: str,
        key_name: str,
        new_key: bool,
        as_json: bool,
        **options: Any,
    ) -> None:
        slug = slug or slugify(organization)
        try:
            validate_slug(slug)
        except ValidationError:
            raise CommandError(
                f"{slug!r} is not a slug (letters, digits, - and _): pass --slug."
            ) from None
        with transaction.atomic():
            person, password = self._user(user, create_user)
            org, org_created = Organization.objects.get_or_create(
                slug=slug, defaults={"name": organization}
            )
            squad, team_created = self._team(org, team)
            membership, membership_created = Membership.objects.get_or_create(
                user=person, organization=org, defaults={"role": Role.ADMIN}
            )
            promoted = membership.role != Role.ADMIN
            if promoted:
                membership.role = Role.ADMIN
                membership.save(update_fields=["role"])
            if not membership.teams.filter(pk=squad.pk).exists():
                membership.teams.add(squad)
            key, secret = self._key(org, key_name, new_key)
        created = {
            "organization": org_created,
            "team": team_created,
            "user": password is not None,
            "membership": membership_created,
            "api_key": secret is not None,
        }
        if as_json:
            self.stdout.write(
                json.dumps(
                    {
                        "organization_id": str(org.pk),
                        "team_id": str(squad.pk),
                        "user": user,
                        "api_key": secret,
                        "api_key_prefix": key.display_prefix,
                        "password": password,
                        "created": created,
                    }
                )
            )
            return

        def made(what: str) -> str:
            return "created" if created[what] else "reused"

        membership_state = (
            "created" if membership_created else "made admin" if promoted else "reused"
        )
        lines = [
            f"organization  {made('organization'):8} {org.name} (slug {org.slug}, id {org.pk})",
            f"team          {made('team'):8} {squad.name} (id {squad.pk})",
            f"user          {made('user'):8} {user}",
            f"membership    {membership_state:8} {user} is an admin of {org.name}",
            f"api key       {made('api_key'):8} {key.display_prefix} ({key.name}, "
            f"{Scope.MANAGE.value})",
        ]
        self.stdout.write("\n".join(lines))
        if password is not None:
            self.stdout.write(f"Password of {user} (shown only once): {password}")
        if secret is not None:
            self.stdout.write(f"API key (shown only once): {secret}")
        else:
            self.stdout.write(
                "The key's secret was shown when it was made; --new-key mints another."
            )

    def _user(self, username: str, create: bool) -> tuple[Any, str | None]:
        """The user, and the password made for them (None when they existed)."""
        model = get_user_model()
        if not create or model._default_manager.filter(**{model.USERNAME_FIELD: username}):
            hint = " Create it first (manage.py createsuperuser), or pass --create-user."
            return find_user(username, hint), None
        password = secrets.token_urlsafe(18)
        return model._default_manager.create_user(
            **{model.USERNAME_FIELD: username}, password=password
        ), password

    def _team(self, org: Organization, name: str) -> tuple[Team, bool]:
        existing = org.teams.filter(name=name).first()
        if existing is not None:
            return existing, False
        return new_team(org, name), True

    def _key(self, org: Organization, name: str, new: bool) -> tuple[ApiKey, str | None]:
        """A live manage key of that name (reused, no secret), or a new one and its secret."""
        if not new:
            for key in org.api_keys.filter(name=name, revoked_at__isnull=True):
                if not key.is_expired and Scope.MANAGE in key.scopes:
                    return key, None
        return issue_api_key(org, name, [Scope.MANAGE])
