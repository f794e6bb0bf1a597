"""The revocation safety net: ``manage.py sweep_listeners [--every SECONDS]``."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from anyreach_listen.revocation import sweep


class Command(BaseCommand):
    help = (
        "Revoke listen sessions whose right is gone (changes that bypassed the app, e.g. "
        "bulk updates) and remove revoked listeners still in a LiveKit room. Once, or "
        "every SECONDS until stopped (SIGTERM/SIGINT)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--every", type=float, default=None, metavar="SECONDS", help="Repeat forever."
        )

    def handle(self, *args: Any, every: float | None, **options: Any) -> None:
        stop = threading.Event()
        if every is not None:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
        while True:
            try:
                result = sweep()
            except Exception as exc:  # LiveKit or the database away: try again next round
                if every is None:
                    raise
                self.stderr.write(f"sweep failed: {type(exc).__name__}: {exc}")
            else:
                if result.revoked or result.removed or every is None:
                    self.stdout.write(
                        f"revoked {result.revoked} session(s), "
                        f"removed {result.removed} lingering listener(s)"
                    )
            if every is None or stop.wait(every):
                return
