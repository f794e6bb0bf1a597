"""The safety net: ``manage.py sweep_listeners [--every SECONDS]``: revocations, and
transcript recorders missing from live calls."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from anyreach_listen import recorder_dispatch
from anyreach_listen.revocation import sweep


class Command(BaseCommand):
    help = (
        "Revoke listen sessions whose right is gone (changes that bypassed the app, e.g. "
        "bulk updates), remove revoked listeners still in a LiveKit room, and dispatch "
        "transcript recorders to live calls that lack them. Once, or "
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
            try:
                # Recorders missing from live calls (a webhook lost, LiveKit or every
                # worker away when asked): dispatched again.
                dispatched = recorder_dispatch.sweep()
            except Exception as exc:
                if every is None:
                    raise
                self.stderr.write(f"recorder dispatch failed: {type(exc).__name__}: {exc}")
            else:
                if dispatched:
                    self.stdout.write(f"dispatched recorders to {dispatched} room(s)")
            if every is None or stop.wait(every):
                return
