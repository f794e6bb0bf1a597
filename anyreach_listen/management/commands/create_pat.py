import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from anyreach_listen.credentials import issue_pat
from anyreach_listen.management.arguments import parse_scopes


class Command(BaseCommand):
    help = "Create a personal access token (pat_…) for a user and print its secret once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", required=True)
        parser.add_argument("--scope", action="append", default=[])
        parser.add_argument("--expires-in-days", type=int, default=None)

    def handle(
        self,
        *args: Any,
        username: str,
        name: str,
        scope: list[str],
        expires_in_days: int | None,
        **options: Any,
    ) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        expires_at = (
            timezone.now() + dt.timedelta(days=expires_in_days) if expires_in_days else None
        )
        pat, secret = issue_pat(user, name, parse_scopes(scope), expires_at=expires_at)
        self.stderr.write(f"Created token {pat.display_prefix}. The secret is shown only once:")
        self.stdout.write(secret)
