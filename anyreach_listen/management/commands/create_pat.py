from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from anyreach_listen.access.credentials import issue_pat
from anyreach_listen.management.arguments import expiry, find_user, parse_scopes


class Command(BaseCommand):
    help = "Create a personal access token (pat_…) for a user and print its secret once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", required=True)
        parser.add_argument("--scope", action="append", default=[])
        parser.add_argument(
            "--expires-in-days",
            type=int,
            default=None,
            metavar="DAYS",
            help="The token stops working after DAYS days (default: never).",
        )

    def handle(
        self,
        *args: Any,
        username: str,
        name: str,
        scope: list[str],
        expires_in_days: int | None,
        **options: Any,
    ) -> None:
        user = find_user(username)
        pat, secret = issue_pat(user, name, parse_scopes(scope), expires_at=expiry(expires_in_days))
        self.stderr.write(f"Created token {pat.display_prefix}. The secret is shown only once:")
        self.stdout.write(secret)
