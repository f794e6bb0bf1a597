from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from anyreach_listen.credentials import issue_api_key
from anyreach_listen.management.arguments import find_organization, parse_scopes


class Command(BaseCommand):
    help = "Create an organization API key (ak_…) and print its secret once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organization", help="Organization slug or id.")
        parser.add_argument("--name", required=True)
        parser.add_argument(
            "--scope",
            action="append",
            default=[],
            help="Scope to grant (repeatable or comma-separated), "
            "e.g. conversations:read_sensitive.",
        )

    def handle(
        self, *args: Any, organization: str, name: str, scope: list[str], **options: Any
    ) -> None:
        key, secret = issue_api_key(find_organization(organization), name, parse_scopes(scope))
        self.stderr.write(f"Created API key {key.display_prefix}. The secret is shown only once:")
        self.stdout.write(secret)
