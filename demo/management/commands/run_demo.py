"""``make demo``: the portal with live demo calls, on the embedded defaults.

It starts the portal and what feeds it (a LiveKit dev server on loopback, daphne, a
transcript recorder and simulated calls, each a process; the periodic ``sweep_listeners``,
a thread of this one) on a seeded SQLite database, so the dashboard moves by itself. It
owns those child processes: it prints only what a person should see and stops them all
together. What runs, what it prints and how it stops: docs/internals/calls.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.test.utils import override_settings
from livekit import api

from anyreach_listen.livekit.service import livekit_api, run_sync
from demo.console import Console, Watcher, read_enter, write_banner
from demo.devserver import DevServerConfig, find_livekit_server
from demo.management.commands.seed_demo import DEMO_CONVERSATIONS
from demo.sweep_thread import SweepThread

CALLERS = ["+1 555 0142", "+1 555 0178", "+44 20 7946 0011", "+1 555 0123"]
STOP_DEADLINE = 10.0  # seconds from the signal until every process of the demo is gone
STOP_GRACE = 6.0  # seconds the children get to stop by themselves; then SIGKILL
RECORDER_DRAIN = 3.0  # seconds the recorder gets to deliver what it heard (--drain-timeout)
APPLICATION_CLOSE_TIMEOUT = 2  # seconds daphne gives a consumer whose client went away
# seconds LiveKit waits for participants before it is told again (a second signal: it
# stops at once); it also misses a SIGINT that comes just after it starts answering HTTP
LIVEKIT_STOP_GRACE = 1.0
SWEEP_EVERY = 5.0  # seconds between two sweep rounds
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# The seeded in-progress call's room is opened for the demo's life (a call on hold), so
# the sweep does not end it as room_gone and the banner's token works for it.
SEEDED_ROOM_SECONDS = 24 * 3600


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.2)
    raise CommandError(f"{url} did not come up within {timeout:.0f} s.")


class Command(BaseCommand):
    help = "Run the portal with live demo calls (LiveKit dev server, daphne, simulated calls)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", 8000)))
        parser.add_argument("--livekit-port", type=int, default=7880)
        parser.add_argument("--lanes", type=int, default=2, help="Calls running at once.")
        parser.add_argument("--call-seconds", type=float, default=75.0)
        parser.add_argument(
            "--log-dir",
            type=Path,
            default=settings.BASE_DIR / "var" / "demo",
            help="Where every process's log and the banner go (default: var/demo/).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # A process manager (SIGTERM) or a closed terminal (SIGHUP) stops the demo like
        # Ctrl-C does, so the children below are stopped too and free their ports.
        for sig in STOP_SIGNALS:
            signal.signal(sig, _interrupt)
        port, lk_port = options["port"], options["livekit_port"]
        for p in (port, lk_port, lk_port + 1):
            if not _port_free(p):
                raise CommandError(f"Port {p} is in use. Stop what uses it or pass another port.")

        call_command("migrate", verbosity=0)
        out = _Capture()
        call_command("seed_demo", as_json=True, stdout=out)
        seed = json.loads(out.text)

        env = {
            **os.environ,
            "LIVEKIT_URL": f"ws://127.0.0.1:{lk_port}",
            "PYTHONUNBUFFERED": "1",
            # The simulated calls register through the REST API, as a platform would.
            "ANYREACH_API_URL": f"http://127.0.0.1:{port}",
            "ANYREACH_API_KEY": seed["api_keys"]["manage"],
            # One recorder runs below, so one per room (two per room wants two workers).
            "RECORDER_PER_ROOM": "1",
            # The recorder delivers what it hears to daphne, which records it.
            "ANYREACH_PORTAL_URL": f"http://127.0.0.1:{port}",
        }
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        # The sweep runs in this process: it sees the app's settings as the children's
        # environment makes them. For the process's life: it ends with the demo.
        override_settings(ANYREACH_LISTEN=_listen_settings_of(env)).enable()
        webhook = f"http://127.0.0.1:{port}/livekit/webhook"
        logs: Path = options["log_dir"]
        logs.mkdir(parents=True, exist_ok=True)
        stop = threading.Event()
        console = Console(self._say)
        watcher = Watcher(console, logs)
        livekit_server = DevServerConfig(
            port=lk_port, tcp_port=lk_port + 1, udp_port=lk_port + 2, webhook_urls=[webhook]
        )
        try:
            livekit_args = livekit_server.args(find_livekit_server())
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        with _children(logs) as spawn:
            # The binary itself, not `manage.py livekit_dev`: a Python process that only
            # waits on it would cost the Django floor. Its calls stop with it: no waiting
            # for their participants to leave.
            livekit = spawn(
                livekit_args,
                env,
                log="livekit.log",
                name="livekit-server",
                insist_after=LIVEKIT_STOP_GRACE,
            )
            watcher.watch("LiveKit", livekit, "livekit.log")
            _wait_http(f"http://127.0.0.1:{lk_port}/", 30)
            daphne = spawn(
                [
                    sys.executable,
                    "-m",
                    "daphne",
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    # A consumer whose socket closed gets this long to finish (default 10 s).
                    "--application-close-timeout",
                    str(APPLICATION_CLOSE_TIMEOUT),
                    "config.asgi:application",
                ],
                env,
                log="daphne.log",
            )
            watcher.watch("daphne", daphne, "daphne.log")
            _wait_http(f"http://127.0.0.1:{port}/accounts/login/", 30)
            self._open_seeded_room(lk_port)
            # The revocation safety net, as a deployment runs it (docs/operations/audit.md,
            # "Whoever loses the right stops listening"); it also dispatches recorders a call
            # lacks, and hands back takeovers whose supervisor left: every 5 s, so the 30 s
            # rule (takeover.LEFT_GRACE) acts on time. A thread of this process.
            SweepThread(SWEEP_EVERY, logs / "sweep.log", stop).start()
            # One transcript recorder (docs/operations/recorder.md): it stores every call's
            # transcript and runs the alert rules on it. The calls wait for it: a call
            # whose room opens before any recorder is up would wait for the sweep.
            recorder_log = logs / "recorder.log"
            start = recorder_log.stat().st_size if recorder_log.exists() else 0
            recorder = spawn(
                [*manage, "run_recorder", "--drain-timeout", str(RECORDER_DRAIN)],
                env,
                log="recorder.log",
            )
            if not _wait_registered(recorder, recorder_log, start, 60):
                self.stderr.write(
                    f"The recorder did not start ({recorder_log}); calls run "
                    "without a recorded transcript."
                )
            else:
                watcher.watch("run_recorder", recorder, "recorder.log")
            banner = self._banner(port, seed, logs)
            console.raw(banner)
            read_enter(console, banner, stop)
            watcher.start()
            for lane in range(options["lanes"]):
                threading.Thread(
                    target=self._call_lane,
                    args=(lane, manage, env, options["call_seconds"], stop, spawn, console),
                    daemon=True,
                ).start()
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                watcher.stop()  # first: no event line may follow this one
                console.raw("\nStopping the demo…")
            finally:
                stop.set()
                watcher.stop()  # the stop's own noise (connections refused) is not news

    def _call_lane(
        self,
        lane: int,
        manage: list[str],
        env: dict[str, str],
        seconds: float,
        stop: threading.Event,
        spawn: Any,
        console: Console,
    ) -> None:
        """Back-to-back calls; lanes start staggered so calls overlap."""
        if stop.wait(lane * seconds / 2):
            return
        n = lane
        while not stop.is_set():
            caller = CALLERS[n % len(CALLERS)]
            n += 1
            try:
                proc = spawn(
                    [
                        *manage,
                        "simulate_call",
                        "--team",
                        "Support",
                        "--duration",
                        str(seconds),
                        "--caller-label",
                        caller,
                    ],
                    env,
                    log=f"calls-{lane}.log",
                )
            except _Stopping:
                return
            while proc.poll() is None and not stop.wait(1):
                pass
            if proc.returncode and not stop.is_set():
                console.say(
                    f"error         a simulated call failed (code {proc.returncode}); "
                    f"see calls-{lane}.log"
                )
            if stop.wait(5):
                return

    def _say(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def _open_seeded_room(self, lk_port: int) -> None:
        """Open the seeded in-progress call's room, empty, for the demo's life."""
        room = DEMO_CONVERSATIONS["active"]["livekit_room"]

        async def create() -> None:
            async with livekit_api(url=f"http://127.0.0.1:{lk_port}") as client:
                await client.room.create_room(
                    api.CreateRoomRequest(
                        name=room,
                        empty_timeout=SEEDED_ROOM_SECONDS,
                        departure_timeout=SEEDED_ROOM_SECONDS,
                    )
                )

        try:
            with warnings.catch_warnings():
                # The dev server's short secret: PyJWT warns on every token, on the terminal.
                warnings.simplefilter("ignore")
                run_sync(create())
        except Exception as exc:
            self.stderr.write(f"Could not open the seeded call's room {room}: {exc}")

    def _banner(self, port: int, seed: dict[str, Any], logs: Path) -> str:
        base = f"http://127.0.0.1:{port}"
        lines = [
            "",
            f"Portal:      {base}/   (admin site: {base}/admin/)",
            f"API docs:    {base}/core/openapi.json",
            "Sign in as (passwords are new on every start):",
        ]
        for role, login in seed["users"].items():
            lines.append(f"  {role:<11} {login['username']:<16} {login['password']}")
        key = seed["api_keys"]["read_sensitive"]
        lines += [
            "Mint a listener token like an integrator would:",
            f"  curl -X POST {base}/core/conversations/{seed['conversations']['active']}"
            f"/listener-token -H 'Authorization: Bearer {key}'",
            "Register calls like a call platform would (docs/platforms.md), with this "
            "conversations:manage key:",
            f"  API key manage   {seed['api_keys']['manage']}",
            f"Demo calls start and end by themselves; below: calls, alerts and errors (every "
            f"process's log in {_shown(logs)}/).",
            "Enter or `make demo-banner` prints this again. Ctrl-C stops everything.",
            "",
        ]
        text = "\n".join(lines)
        write_banner(logs, text)
        return text


def _listen_settings_of(env: dict[str, str]) -> dict[str, Any]:
    """``ANYREACH_LISTEN`` as config/settings.py reads it from the children's ``env``:
    this LiveKit, one recorder per room, delivering to this portal."""
    listen: dict[str, Any] = {**settings.ANYREACH_LISTEN, "LIVEKIT_URL": env["LIVEKIT_URL"]}
    recorder = listen.get("RECORDER") or {"AGENT_NAME": "anyreach-recorder"}
    listen["RECORDER"] = {
        **recorder,
        "PER_ROOM": int(env["RECORDER_PER_ROOM"]),
        "PORTAL_URL": env["ANYREACH_PORTAL_URL"],
    }
    return listen


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is under it (var/demo)."""
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


def _wait_registered(proc: subprocess.Popen[bytes], log: Path, start: int, timeout: float) -> bool:
    """Whether the recorder logged its registration with LiveKit (after byte ``start``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(FileNotFoundError), open(log, "rb") as f:
            f.seek(start)
            if b"registered worker" in f.read():
                return True
        time.sleep(0.2)
    return False


def _interrupt(signum: int, frame: object) -> None:
    # The first signal stops the demo; the ones after it (make forwards SIGTERM, a
    # second Ctrl-C) must not cut that stop short, leaving children running.
    for sig in STOP_SIGNALS:
        signal.signal(sig, _ignore)
    raise KeyboardInterrupt


def _ignore(signum: int, frame: object) -> None:
    pass  # not SIG_IGN: an ignored signal stays ignored in a child's new program


class _Stopping(Exception):
    """The demo is stopping: no new child."""


class _Capture:
    def __init__(self) -> None:
        self.text = ""

    def write(self, value: str) -> None:
        self.text += value

    def flush(self) -> None:
        pass


@contextlib.contextmanager
def _children(log_dir: Path) -> Iterator[Any]:
    """Spawn child processes in their own groups; stop them all on exit, within
    ``STOP_GRACE`` seconds (then SIGKILL)."""
    procs: list[subprocess.Popen[bytes]] = []
    names: dict[int, str] = {}  # pid -> the command (daphne, run_recorder, ...)
    lock = threading.Lock()
    stopping = False

    insist: dict[int, float] = {}  # pid -> seconds into the stop it gets a second signal

    def spawn(
        args: list[str],
        env: dict[str, str],
        log: str = "",
        name: str = "",
        insist_after: float | None = None,
    ) -> subprocess.Popen[bytes]:
        # Under the lock: a call lane starting a call as the demo stops either gets its
        # child on the list that is stopped, or no child (_Stopping).
        with lock:
            if stopping:
                raise _Stopping
            # Appending: each child writes whole lines, and the file handle is inherited.
            out = open(log_dir / log, "ab") if log else None  # noqa: SIM115
            proc = subprocess.Popen(  # noqa: S603 (our own argv, no shell)
                args,
                env=env,
                start_new_session=True,
                stdin=subprocess.DEVNULL,  # the terminal's Enter is the demo's
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
            )
            if out:
                out.close()  # the child holds its own copy
            procs.append(proc)
            names[proc.pid] = name or (args[2] if len(args) > 2 else args[0])
            if insist_after is not None:
                insist[proc.pid] = insist_after
        return proc

    try:
        yield spawn
    finally:
        with lock:
            stopping = True
            live = [p for p in procs if p.poll() is None]
        # All at once: their stops overlap (the recorder's drain, daphne's, LiveKit's).
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
        started = time.monotonic()
        while any(p.poll() is None for p in live) and time.monotonic() < started + STOP_GRACE:
            for proc in live:
                due = insist.get(proc.pid)
                if due is not None and time.monotonic() - started > due and proc.poll() is None:
                    del insist[proc.pid]  # once
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGTERM)
            time.sleep(0.05)
        for proc in live:
            if proc.poll() is None:
                name = names.get(proc.pid, str(proc.pid))
                sys.stderr.write(f"{name} did not stop within {STOP_GRACE:.0f} s: killed\n")
            # The whole group, even when its leader stopped: what a child started and
            # left behind goes too (the leader was reaped moments ago: its pid is ours).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
