"""What ``make demo`` prints after its banner: what a person watching should see, once.

A call started or ended, an alert raised (read from the database the portal writes),
an error logged by one of the demo's processes, a process that died. Everything else
those processes say (requests, webhooks, LiveKit) goes to their logs in ``var/demo/``
only. The banner is kept in ``banner.txt`` there (``make demo-banner`` prints it again)
and, in a terminal, Enter prints it again.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from django.db import connections
from django.utils import timezone

from anyreach_listen.models import Alert, Conversation

BANNER_FILE = "banner.txt"
POLL_INTERVAL = 1.0  # seconds between two looks at the database and the logs
# A log line at one of these levels, in the formats of our processes (Python's logging,
# LiveKit's zap), is shown; the rest of a traceback stays in the log.
ERROR_LINE = re.compile(rb"\b(ERROR|CRITICAL|FATAL|PANIC)\b")
# The LiveKit client SDK's Rust engine logs a room's ordinary end as errors ("publisher
# data channel '_reliable' closed unexpectedly") in every call's recorder and simulator:
# its internals, kept in the logs, not news.
NOT_NEWS = re.compile(rb"livekit::rtc_engine")
MAX_ERROR_LENGTH = 240


def write_banner(log_dir: Path, text: str) -> Path:
    """Keep the banner (it holds passwords and keys: readable by its owner only)."""
    path = log_dir / BANNER_FILE
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return path


class Console:
    """Timestamped lines on the demo's stdout, one writer at a time."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        with self._lock:
            self._write(f"{timezone.localtime():%H:%M:%S}  {text}")

    def raw(self, text: str) -> None:
        with self._lock:
            self._write(text)


class Watcher:
    """Polls the database and the logs; ``say``s what changed since it was made."""

    def __init__(self, console: Console, log_dir: Path) -> None:
        self.console = console
        self.log_dir = log_dir
        self.services: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
        self._since = timezone.now()
        self._started: set[object] = set()
        self._ended: set[object] = set()
        self._alerts: set[object] = set()
        self._errors: set[bytes] = set()
        # Logs are appended to across runs: only what is written from now on counts.
        self._offsets = {path: path.stat().st_size for path in log_dir.glob("*.log")}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-console", daemon=True)

    def watch(self, name: str, proc: subprocess.Popen[bytes], log: str) -> None:
        """Say so if ``proc`` (a process the demo needs all along) exits."""
        self.services[name] = (proc, log)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            while not self._stop.wait(POLL_INTERVAL):
                self.poll()
        finally:
            connections.close_all()  # this thread's database connection

    def poll(self) -> None:
        for check in (self._calls, self._raised, self._logged, self._exited):
            try:
                check()
            except Exception as exc:  # the database busy, a log rotated: next time
                self.console.say(f"(the demo's console: {type(exc).__name__}: {exc})")

    def _calls(self) -> None:
        recent = Conversation.objects.filter(created_at__gte=self._since).select_related("team")
        for call in recent.order_by("created_at"):
            if call.pk not in self._started:
                self._started.add(call.pk)
                self.console.say(f"call started  {_label(call)}")
            if not call.is_active and call.pk not in self._ended:
                self._ended.add(call.pk)
                reason = call.metadata.get("ended_by", "")
                how = call.get_status_display().lower()
                self.console.say(
                    f"call ended    {_label(call)}: {how}" + (f" ({reason})" if reason else "")
                )

    def _raised(self) -> None:
        raised = Alert.objects.filter(raised_at__gte=self._since).select_related(
            "rule", "conversation"
        )
        for alert in raised.order_by("raised_at"):
            if alert.pk in self._alerts:
                continue
            self._alerts.add(alert.pk)
            self.console.say(
                f"alert         {alert.rule.severity}: {alert.rule.phrase!r} said in "
                f"{_label(alert.conversation)}"
            )

    def _logged(self) -> None:
        for path in sorted(self.log_dir.glob("*.log")):
            start = self._offsets.get(path, 0)
            size = path.stat().st_size
            if size < start:
                start = 0  # truncated
            if size == start:
                continue
            with open(path, "rb") as f:
                f.seek(start)
                chunk = f.read(size - start)
            complete = chunk.rfind(b"\n") + 1  # a line still being written waits
            self._offsets[path] = start + complete
            for line in chunk[:complete].splitlines():
                if not ERROR_LINE.search(line) or NOT_NEWS.search(line) or line in self._errors:
                    continue
                self._errors.add(line)
                text = line.decode(errors="replace").strip()
                if len(text) > MAX_ERROR_LENGTH:
                    text = text[: MAX_ERROR_LENGTH - 1] + "…"
                self.console.say(f"error         {path.name}: {text}")

    def _exited(self) -> None:
        for name, (proc, log) in list(self.services.items()):
            code = proc.poll()
            if code is not None:
                del self.services[name]
                self.console.say(f"error         {name} exited (code {code}); see {log}")


def _label(call: Conversation) -> str:
    who = call.caller_label or call.livekit_room or str(call.pk)
    return f"{who} ({call.team.name})" if call.team else who


def read_enter(console: Console, banner: str, stop: threading.Event) -> None:
    """In a terminal, Enter prints the banner again (a daemon thread: it blocks on stdin)."""
    if not sys.stdin or not sys.stdin.isatty():
        return

    def loop() -> None:
        with contextlib.suppress(OSError, ValueError):
            for _ in sys.stdin:
                if stop.is_set():
                    return
                console.raw(banner)

    threading.Thread(target=loop, name="demo-banner", daemon=True).start()
