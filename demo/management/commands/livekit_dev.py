"""``manage.py livekit_dev``: a local LiveKit server in --dev mode, webhooks to this app."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from demo.devserver import DevServerConfig, find_livekit_server

STOP_GRACE = 5.0  # seconds the server gets to stop before it is terminated, then killed
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends it SIGKILL when this command dies.

    The server runs in a session of its own, so nothing else reaches it when this
    command is killed outright (a supervisor's last resort for a child that will not stop).
    """
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Command(BaseCommand):
    help = (
        "Run livekit-server --dev on 127.0.0.1 (keys devkey / secret) with webhooks posted "
        "to this app. Ctrl-C stops it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=7880, help="HTTP/WebSocket port.")
        parser.add_argument("--tcp-port", type=int, help="ICE/TCP port (default: port + 1).")
        parser.add_argument("--udp-port", type=int, help="ICE/UDP port (default: port + 2).")
        parser.add_argument(
            "--webhook-url",
            action="append",
            default=[],
            help="Where LiveKit posts webhooks (repeatable; default: "
            "http://127.0.0.1:8000/livekit/webhook). Pass 'none' to disable.",
        )
        parser.add_argument(
            "--stop-grace",
            type=float,
            default=STOP_GRACE,
            help="Seconds the server gets to stop on Ctrl-C (it waits for participants to "
            f"leave) before it is told again, then twice that before it is killed; default "
            f"{STOP_GRACE:g}.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        urls = options["webhook_url"] or ["http://127.0.0.1:8000/livekit/webhook"]
        urls = [u for u in urls if u.lower() != "none"]
        port = options["port"]
        config = DevServerConfig(
            port=port,
            tcp_port=options["tcp_port"] or port + 1,
            udp_port=options["udp_port"] or port + 2,
            webhook_urls=urls,
        )
        try:
            args_ = config.args(find_livekit_server())
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(
            f"LiveKit dev server on {config.ws_url} (key devkey, secret secret); "
            f"webhooks → {', '.join(urls) or 'off'}"
        )
        # Own session: a terminal Ctrl-C reaches the server once, forwarded by us.
        proc = subprocess.Popen(  # noqa: S603 - our binary
            args_,
            start_new_session=True,
            # preexec_fn is safe here: this command runs no other thread.
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )

        stop_requested: list[float] = []

        def forward(signum: int, frame: FrameType | None) -> None:
            if proc.poll() is None:
                proc.send_signal(signum)
                stop_requested.append(time.monotonic())

        previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            code = self._wait(proc, stop_requested, options["stop_grace"])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if code not in (0, -signal.SIGINT, -signal.SIGTERM, -signal.SIGKILL):
            raise CommandError(f"livekit-server exited with status {code}")

    @staticmethod
    def _wait(proc: subprocess.Popen[bytes], stop_requested: list[float], grace: float) -> int:
        """Wait for the server; escalate if it ignores a stop request.

        livekit-server sometimes misses a SIGINT that arrives right after it
        starts answering HTTP, and waits for the participants still in rooms to leave,
        so after a grace period it gets SIGTERM (a second signal: it stops at once),
        then SIGKILL.
        """
        while True:
            try:
                return proc.wait(timeout=0.25)
            except subprocess.TimeoutExpired:
                if not stop_requested:
                    continue
                waited = time.monotonic() - stop_requested[0]
                if waited > 2 * grace:
                    proc.kill()
                elif waited > grace:
                    proc.terminate()
