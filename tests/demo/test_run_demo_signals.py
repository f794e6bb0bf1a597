"""``manage.py run_demo`` (``make demo``) stopped the way a process manager (SIGTERM) or
a closed terminal (SIGHUP) stops it: LiveKit, daphne, the sweep, the recorder and
the simulated calls it started stop too, and none of its ports stays taken.

run_demo runs in a session of its own, on free ports and a throwaway SQLite file,
until its portal answers and a simulated call is live in its LiveKit; then the
signal goes to run_demo alone (its children run in sessions of their own, so a
signal to a group would never reach them anyway).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from livekit import api

from demo.devserver import DEV_API_KEY, DEV_API_SECRET
from tests.support.processes import (
    ROOT,
    ProcessInfo,
    descendants,
    free_port,
    http_ok,
    still_running,
    tcp_port_free,
    udp_port_free,
    wait_until,
)

pytestmark = pytest.mark.e2e  # a real livekit-server and simulated calls


def _livekit_ports() -> int:
    """A port P with P (HTTP), P + 1 (ICE/TCP) and P + 2 (ICE/UDP) free, as run_demo uses them."""
    for _ in range(50):
        port = free_port()
        if port + 2 < 65536 and tcp_port_free(port + 1) and udp_port_free(port + 2):
            return port
    raise RuntimeError("no three consecutive free ports")


def _live_rooms(url: str) -> list[int]:
    """Participants in each room of the LiveKit server at ``url``."""

    async def rooms() -> list[int]:
        async with api.LiveKitAPI(url, DEV_API_KEY, DEV_API_SECRET) as client:
            listed = await client.room.list_rooms(api.ListRoomsRequest())
            return [room.num_participants for room in listed.rooms]

    # In a thread of its own: a browser test may already run a loop in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, rooms()).result(timeout=10)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_stops_livekit_daphne_and_the_calls(tmp_path: Path, signum: int) -> None:
    port, lk_port = free_port(), _livekit_ports()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "PYTHONUNBUFFERED": "1",
    }
    args = ["--port", str(port), "--livekit-port", str(lk_port), "--lanes", "1"]
    out = open(tmp_path / "run_demo.log", "wb")  # noqa: SIM115 - closed below
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "run_demo", *args, "--call-seconds", "60"],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    children: list[ProcessInfo] = []
    try:
        portal = f"http://127.0.0.1:{port}/accounts/login/"
        wait_until(lambda: demo.poll() is None and http_ok(portal), timeout=60, what="the portal")
        livekit_http = f"http://127.0.0.1:{lk_port}"
        # A call is live: its agent is in a room.
        wait_until(
            lambda: any(n >= 1 for n in _live_rooms(livekit_http)),
            timeout=45,
            interval=0.5,
            what="a simulated call in LiveKit",
        )
        children = descendants(demo.pid)
        commands = " | ".join(c.argv for c in children)
        for part in (
            "livekit_dev",
            "livekit-server",
            "daphne",
            "sweep_listeners",
            "run_recorder",
            "simulate_call",
        ):
            assert part in commands, commands

        demo.send_signal(signum)  # run_demo only: not its group, not its children
        signalled = time.monotonic()
        code = demo.wait(timeout=30)
        print(f"run_demo exited {time.monotonic() - signalled:.1f} s after the signal")
        wait_until(
            lambda: not any(still_running(c) for c in children),
            timeout=15,
            what="every child of run_demo to stop: "
            + " | ".join(c.argv for c in children if still_running(c)),
        )
        wait_until(
            lambda: (
                tcp_port_free(port)
                and tcp_port_free(lk_port)
                and tcp_port_free(lk_port + 1)
                and udp_port_free(lk_port + 2)
            ),
            timeout=10,
            what="run_demo's ports to be free",
        )
        print(f"children gone, ports free {time.monotonic() - signalled:.1f} s after the signal")
        assert code == 0, (tmp_path / "run_demo.log").read_text()
        assert "Stopping the demo" in (tmp_path / "run_demo.log").read_text()
    finally:
        # Whatever the outcome, nothing this test started keeps running.
        if demo.poll() is None:
            children += descendants(demo.pid)
        for proc in children:
            if still_running(proc):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(timeout=10)
        out.close()
