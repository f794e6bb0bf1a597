"""``make demo`` stopped the way people and machines stop it (Ctrl-C, a closed terminal,
a process manager), with a call running and a supervisor's portal websocket open: every
process of the demo is gone within ``STOP_DEADLINE`` of the signal and none of its ports
stays taken, so a stopped demo never leaves a stray server behind. The last test drives
run_demo's stop itself, with a child that ignores SIGINT and a second signal mid-stop.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import httpx
import pytest

from anyreach_listen.livekit.service import run_sync
from demo.management.commands import run_demo
from demo.management.commands.run_demo import STOP_DEADLINE, STOP_SIGNALS
from tests.support.demo_tree import demo_processes, live_rooms, livekit_ports
from tests.support.processes import (
    ROOT,
    ProcessInfo,
    free_port,
    http_ok,
    process_info,
    still_running,
    tcp_port_free,
    udp_port_free,
    wait_until,
)


def _supervisor_cookie(base: str, log: Path) -> str:
    """Sign in as the demo's supervisor (its password is new each start: the banner has it)."""
    banner = re.search(r"^\s+supervisor\s+(\S+)\s+(\S+)\s*$", log.read_text(), re.MULTILINE)
    assert banner, log.read_text()
    with httpx.Client(base_url=base, timeout=10) as client:
        client.get("/accounts/login/")
        response = client.post(
            "/accounts/login/",
            data={
                "username": banner[1],
                "password": banner[2],
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
            },
        )
        assert response.status_code == 302, response.text
        return f"sessionid={client.cookies['sessionid']}"


class _PortalSocket:
    """A supervisor's event-stream websocket on the demo's daphne, read on a thread."""

    def __init__(self, base: str, cookie: str) -> None:
        self.url = base.replace("http://", "ws://") + "/ws/listen/events/"
        self.origin, self.cookie = base, cookie
        self.open = threading.Event()
        self.closed = threading.Event()
        self.thread = threading.Thread(target=lambda: run_sync(self._read()), daemon=True)

    async def _read(self) -> None:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(
                    self.url, headers={"Cookie": self.cookie}, origin=self.origin
                ) as ws,
            ):
                self.open.set()
                async for _ in ws:
                    pass  # until the server closes it (or goes away)
        finally:
            self.closed.set()

    def start(self) -> None:
        self.thread.start()
        assert self.open.wait(15), "the portal websocket did not open"


@pytest.mark.e2e  # a real livekit-server and simulated calls
@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"]
)
def test_make_demo_stops_within_the_deadline_with_a_call_and_a_portal_socket_open(
    tmp_path: Path, signum: int
) -> None:
    port, lk_port = free_port(), livekit_ports()
    database = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database,
        "PYTHONUNBUFFERED": "1",
    }
    # Every process of the demo inherits this throwaway database's URL: that is how the
    # test finds them all, even one that outlives its parent.
    marker = f"DATABASE_URL={database}\0".encode()
    run_demo = (
        f"{sys.executable} manage.py run_demo --port {port} --livekit-port {lk_port} "
        "--lanes 1 --call-seconds 60"
    )
    makefile = tmp_path / "Makefile"
    makefile.write_text(f".PHONY: demo\ndemo:\n\t{run_demo}\n")  # PHONY: ./demo/ exists
    log = tmp_path / "make-demo.log"
    out = open(log, "wb")  # noqa: SIM115 - closed below
    make = subprocess.Popen(
        ["make", "--no-print-directory", "-f", str(makefile), "demo"],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group, as a terminal's foreground job has
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: make.poll() is None and http_ok(f"{base}/accounts/login/"),
            timeout=60,
            what="the portal",
        )
        # A call is live: its agent is in a room.
        wait_until(
            lambda: any(n >= 1 for n in live_rooms(f"http://127.0.0.1:{lk_port}")),
            timeout=60,
            interval=0.5,
            what="a simulated call in LiveKit",
        )
        socket = _PortalSocket(base, _supervisor_cookie(base, log))
        socket.start()
        running = demo_processes(marker)
        commands = " | ".join(running.values())
        for part in (
            "make",
            "run_demo",
            "livekit-server",
            "daphne",
            "run_recorder",
            "simulate_call",
        ):
            assert part in commands, commands
        # LiveKit runs as its binary and the sweep as a thread of run_demo: no Python
        # process (the Django floor each) only waits on a server or sleeps between rounds.
        for helper in ("livekit_dev", "sweep_listeners"):
            assert helper not in commands, commands

        # To make's group, as a terminal or process manager sends it (make forwards SIGTERM
        # too, so run_demo gets that one twice); run_demo's children run in sessions of
        # their own, so this reaches make and run_demo only.
        os.killpg(make.pid, signum)
        signalled = time.monotonic()
        try:
            wait_until(
                lambda: not demo_processes(marker),
                timeout=STOP_DEADLINE,
                interval=0.1,
                what=f"every process of the demo to stop within {STOP_DEADLINE:.0f} s",
            )
        except TimeoutError:
            left = demo_processes(marker)
            pytest.fail(
                f"{len(left)} process(es) of the demo still running {STOP_DEADLINE:.0f} s "
                f"after {signal.Signals(signum).name}: {' | '.join(left.values())}"
            )
        stopped = time.monotonic() - signalled
        print(f"\nevery process of the demo gone {stopped:.1f} s after the signal")
        assert socket.closed.wait(5), "the portal websocket outlived daphne"
        wait_until(
            lambda: (
                tcp_port_free(port)
                and tcp_port_free(lk_port)
                and tcp_port_free(lk_port + 1)
                and udp_port_free(lk_port + 2)
            ),
            timeout=5,
            what="the demo's ports to be free",
        )
        assert "Stopping the demo" in log.read_text(), log.read_text()
    finally:
        # Whatever the outcome, nothing this test started keeps running.
        for pid in demo_processes(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            make.wait(timeout=10)
        out.close()


# A child that notes SIGINT and goes on (a stop that hangs), with a grandchild in its
# group; it writes its grandchild's pid, then, on SIGINT, a second file.
STUBBORN = """
import pathlib, signal, subprocess, sys, time
mark = pathlib.Path(sys.argv[1])
signal.signal(signal.SIGINT, lambda *_: mark.with_suffix(".sigint").touch())
grandchild = subprocess.Popen(["sleep", "600"])
mark.write_text(str(grandchild.pid))
while True:
    time.sleep(1)
"""


def test_a_second_signal_in_the_middle_of_the_stop_does_not_cut_it_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_demo, "STOP_GRACE", 1.0, raising=False)
    mark = tmp_path / "child.pid"
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        signal.signal(sig, run_demo._interrupt)  # as run_demo's handle() does

    def second_signal() -> None:
        # make forwards SIGTERM to run_demo, which got it from the group already.
        wait_until(mark.with_suffix(".sigint").exists, timeout=10, what="the child's SIGINT")
        os.kill(os.getpid(), signal.SIGTERM)

    helper = threading.Thread(target=second_signal, daemon=True)
    child: ProcessInfo | None = None
    grandchild: ProcessInfo | None = None
    try:
        with pytest.raises(KeyboardInterrupt), run_demo._children(tmp_path) as spawn:
            proc = spawn([sys.executable, "-c", STUBBORN, str(mark)], dict(os.environ))
            wait_until(lambda: mark.exists() and mark.read_text(), timeout=10, what="the child")
            child = process_info(proc.pid)
            grandchild = process_info(int(mark.read_text()))
            helper.start()
            os.kill(os.getpid(), signal.SIGTERM)  # the first signal: the demo stops
            wait_until(lambda: False, timeout=10, what="the signal")  # (it raises first)
        helper.join(10)
        assert child is not None and grandchild is not None
        # Past the grace, the child and its whole group were killed: nothing is left.
        wait_until(
            lambda: not still_running(child) and not still_running(grandchild),
            timeout=5,
            what="the child and its grandchild to be gone",
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for leftover in (child, grandchild):
            if leftover is not None and still_running(leftover):
                os.kill(leftover.pid, signal.SIGKILL)
