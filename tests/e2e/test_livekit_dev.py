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
from tests.support.processes import ROOT, free_port, http_ok, wait_until


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
