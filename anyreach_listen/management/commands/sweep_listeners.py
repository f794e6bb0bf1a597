"""The safety net: ``manage.py sweep_listeners [--every SECONDS]``: live calls whose
LiveKit room is gone, revocations, takeovers due to end (``assist/takeover.py``), and
transcript recorders missing from live calls."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from anyreach_listen.assist import takeover
from anyreach_listen.listening.revocation import sweep
from anyreach_listen.livekit import reconciliation
from anyreach_listen.recorder import dispatch as recorder_dispatch


class Command(BaseCommand):
    help = (
        "End as failed (room_gone) the live calls whose LiveKit room has been gone for "
        "more than ROOM_GONE_GRACE seconds, revoke "
        "listen sessions whose right is gone (changes that bypassed the app, e.g. "
        "bulk updates), remove revoked listeners still in a LiveKit room, hand back "
        "takeovers whose supervisor left, whose token expired unrenewed or whose holder "
        "lost the right, and dispatch "
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
            self.sweep_round(repeating=every is not None)
            if every is None or stop.wait(every):
                return

    def sweep_round(self, *, repeating: bool) -> None:
        """One round of every sweep. ``repeating``: a failed step is written to stderr
        and the round goes on (the next round tries again); once, it raises."""
        # First the calls whose room is gone (a LiveKit restart, a lost room_finished):
        # ended, so the steps below skip them. LiveKit away: logged, nothing closed.
        try:
            reconciled = reconciliation.reconcile()
        except Exception as exc:  # the database away: try again next round
            if not repeating:
                raise
            self.stderr.write(f"reconciliation failed: {type(exc).__name__}: {exc}")
        else:
            if not reconciled.checked:
                self.stderr.write("LiveKit did not list its rooms: no call closed")
            elif reconciled.closed or not repeating:
                self.stdout.write(
                    f"closed {reconciled.closed} call(s) whose room is gone (room_gone)"
                )
            if reconciled.lost:
                self.stdout.write(
                    f"{reconciled.lost} call(s) lost their room to the organization "
                    "its metadata names (room_not_owned)"
                )
        try:
            result = sweep()
        except Exception as exc:  # LiveKit or the database away: try again next round
            if not repeating:
                raise
            self.stderr.write(f"sweep failed: {type(exc).__name__}: {exc}")
        else:
            if result.revoked or result.removed or not repeating:
                self.stdout.write(
                    f"revoked {result.revoked} session(s), "
                    f"removed {result.removed} lingering listener(s)"
                )
        try:
            # Takeovers due to end: the supervisor gone over LEFT_GRACE seconds (so the
            # sweep runs more often than that), the token unrenewed, the right lost.
            handed_back = takeover.sweep()
        except Exception as exc:
            if not repeating:
                raise
            self.stderr.write(f"takeover sweep failed: {type(exc).__name__}: {exc}")
        else:
            if handed_back or not repeating:
                self.stdout.write(f"ended {handed_back} takeover(s)")
        try:
            # Recorders missing from live calls (a webhook lost, LiveKit or every
            # worker away when asked): dispatched again.
            dispatched = recorder_dispatch.sweep()
        except Exception as exc:
            if not repeating:
                raise
            self.stderr.write(f"recorder dispatch failed: {type(exc).__name__}: {exc}")
        else:
            if dispatched:
                self.stdout.write(f"dispatched recorders to {dispatched} room(s)")
