from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from anyreach_listen.management.arguments import find_organization, new_team


class Command(BaseCommand):
    help = "Create a team in an organization and print its id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organization", help="Organization slug or id.")
        parser.add_argument("name")

    def handle(self, *args: Any, organization: str, name: str, **options: Any) -> None:
        org = find_organization(organization)
        existing = org.teams.filter(name=name).first()
        if existing is not None:
            raise CommandError(f"{org.name} already has a team named {name!r} (id {existing.pk}).")
        self.stdout.write(str(new_team(org, name).pk))
