"""Transcript retention: ``manage.py purge_transcripts``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from anyreach_listen.conf import listen_settings
from anyreach_listen.transcripts import purge


class Command(BaseCommand):
    help = (
        "Delete the transcripts (and their alerts) of conversations that ended more than "
        "TRANSCRIPT_RETENTION_DAYS ago. Safe to run again: a second run deletes nothing."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        result = purge()
        self.stdout.write(
            f"purged {result.segments} segment(s) and {result.alerts} alert(s) of "
            f"{result.conversations} conversation(s) ended more than "
            f"{listen_settings.TRANSCRIPT_RETENTION_DAYS} day(s) ago"
        )
