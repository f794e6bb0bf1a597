"""``manage.py livekit_dev`` (``demo/management/commands/livekit_dev.py``) runs a real LiveKit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.livekit import free_udp_port
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


@pytest.mark.e2e
def test_livekit_dev_serves_on_loopback_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "livekit_dev.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "livekit_dev", "--port", str(port),
         "--tcp-port", str(free_port()), "--udp-port", str(free_udp_port()),
         "--webhook-url", "http://127.0.0.1:9/livekit/webhook"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/"), timeout=30, what="livekit_dev")
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        assert proc.wait(timeout=20) == 0
        assert "webhooks → http://127.0.0.1:9/livekit/webhook" in log_path.read_text()
        with pytest.raises(httpx.ConnectError):
            http_ok(f"http://127.0.0.1:{port}/")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


@pytest.mark.e2e
def test_livekit_dev_killed_takes_its_server_with_it(tmp_path: Path) -> None:
    """``kill -9`` of the command (a supervisor's last resort for a child that will not stop)
    must not leave livekit-server, in a session of its own, holding the ports."""
    port, tcp_port, udp_port = free_port(), free_port(), free_udp_port()
    log = open(tmp_path / "livekit_dev.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "livekit_dev", "--port", str(port),
         "--tcp-port", str(tcp_port), "--udp-port", str(udp_port), "--webhook-url", "none"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    servers: list[ProcessInfo] = []
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/"), timeout=30, what="livekit_dev")
        servers = [p for p in descendants(proc.pid) if "livekit-server" in p.argv]
        assert len(servers) == 1, descendants(proc.pid)
        proc.kill()
        proc.wait(timeout=10)
        wait_until(lambda: not still_running(servers[0]), timeout=10, what="livekit-server to stop")
        wait_until(
            lambda: tcp_port_free(port) and tcp_port_free(tcp_port) and udp_port_free(udp_port),
            timeout=10,
            what="its ports to be free",
        )
    finally:
        for server in servers:
            if still_running(server):
                os.kill(server.pid, signal.SIGKILL)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
