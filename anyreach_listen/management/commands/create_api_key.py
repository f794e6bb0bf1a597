from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from anyreach_listen.access.credentials import issue_api_key
from anyreach_listen.management.arguments import expiry, find_organization, parse_scopes


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
        parser.add_argument(
            "--expires-in-days",
            type=int,
            default=None,
            metavar="DAYS",
            help="The key stops working after DAYS days (default: never).",
        )

    def handle(
        self,
        *args: Any,
        organization: str,
        name: str,
        scope: list[str],
        expires_in_days: int | None,
        **options: Any,
    ) -> None:
        org = find_organization(organization)
        scopes = parse_scopes(scope)
        expires_at = expiry(expires_in_days)
        key, secret = issue_api_key(org, name, scopes, expires_at=expires_at)
        until = f", expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else ""
        self.stderr.write(
            f"Created API key {key.display_prefix}{until}. The secret is shown only once:"
        )
        self.stdout.write(secret)
