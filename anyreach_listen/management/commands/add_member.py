"""``manage.py add_member USER ORG --role ROLE [--team TEAM …]``: a membership, as stated.

Run again, it updates the membership to what it says (role and teams); a role or team
taken away takes the member's listeners out of the calls they may no longer hear
(``revocation.py``, through the membership signals).
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from anyreach_listen.access.roles import Role
from anyreach_listen.management.arguments import find_organization, find_team, find_user, parse_role
from anyreach_listen.models import Membership


class Command(BaseCommand):
    help = (
        "Make a user a member of an organization with a role and teams, or update their "
        "membership to exactly that role and those teams."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("organization", help="Organization slug or id.")
        parser.add_argument("--role", required=True, help=f"One of {', '.join(Role.values)}.")
        parser.add_argument(
            "--team",
            action="append",
            default=[],
            help="A team (name or id) whose calls the member sees (repeatable). The "
            "membership's teams become exactly these (none: no team). Admins see every "
            "call of the organization whatever their teams.",
        )

    def handle(
        self,
        *args: Any,
        username: str,
        organization: str,
        role: str,
        team: list[str],
        **options: Any,
    ) -> None:
        user = find_user(username)
        org = find_organization(organization)
        role = parse_role(role)
        teams = {t.pk: t for t in (find_team(org, value) for value in team)}
        with transaction.atomic():
            membership, created = Membership.objects.select_for_update().get_or_create(
                user=user, organization=org, defaults={"role": role}
            )
            before_role = membership.role
            before_teams = set(membership.teams.values_list("pk", flat=True))
            if membership.role != role:
                membership.role = role
                membership.save(update_fields=["role"])
            if before_teams != set(teams):
                membership.teams.set(teams.values())
        names = ", ".join(sorted(t.name for t in teams.values())) or "none"
        if created:
            what = "Added"
        elif before_role == role and before_teams == set(teams):
            what = "Unchanged:"
        else:
            what = "Updated"
        self.stdout.write(f"{what} {username} in {org.name} as {role} (teams: {names}).")
        if role != Role.ADMIN and not teams:
            self.stderr.write(
                f"Note: a {role} without a team sees no calls; give --team (repeatable)."
            )
