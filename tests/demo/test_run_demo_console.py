"""``make demo`` is quiet: ``run_demo`` prints its banner, then only what a person should
see (a call started or ended, an alert, errors), each line once; every process's own
output (requests, webhooks, LiveKit) goes to its log in the log directory, and the
banner is kept there for ``make demo-banner``.

run_demo runs for real (LiveKit, daphne, the sweep, a recorder, a simulated call) on
free ports, a throwaway SQLite file and a throwaway log directory.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from demo.management.commands.run_demo import STOP_DEADLINE
from tests.support.demo_tree import demo_processes, livekit_ports
from tests.support.processes import ROOT, free_port, wait_until

# What the console may print after the banner: "HH:MM:SS  what", or the stop.
CONSOLE_LINE = re.compile(r"^\d\d:\d\d:\d\d  (call started|call ended|alert|error) +\S")


@pytest.mark.e2e  # a real livekit-server, a recorder and a simulated call
def test_the_demo_prints_its_banner_then_calls_and_alerts_once_and_logs_the_rest(
    tmp_path: Path,
) -> None:
    port, lk_port = free_port(), livekit_ports()
    database = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    logs = tmp_path / "demo-logs"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database,
        "PYTHONUNBUFFERED": "1",
    }
    marker = f"DATABASE_URL={database}\0".encode()
    out_path = tmp_path / "run_demo.out"
    with open(out_path, "wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "manage.py", "run_demo", "--port", str(port), "--livekit-port",
             str(lk_port), "--lanes", "1", "--call-seconds", "12", "--log-dir", str(logs)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:

        def printed() -> str:
            assert demo.poll() is None, out_path.read_text()
            return out_path.read_text()

        # The first call: it starts, its caller says "charged twice" (the seeded alert
        # rule, raised from what the recorder heard), it ends.
        wait_until(
            lambda: "call ended" in printed(), timeout=180, interval=0.5, what="a call to end"
        )
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(timeout=STOP_DEADLINE + 10)
    finally:
        for pid in demo_processes(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(timeout=10)
    text = out_path.read_text()
    print(text)

    banner = (logs / "banner.txt").read_text()
    assert text.startswith(banner), text  # the banner first, as make demo-banner prints it
    assert re.search(r"^\s+supervisor\s+demo-supervisor\s+\S+$", banner, re.MULTILINE), banner
    assert "API key manage   ak_" in banner
    after = [line for line in text[len(banner) :].splitlines() if line.strip()]
    assert after[-1] == "Stopping the demo…", after
    events = after[:-1]
    assert all(CONSOLE_LINE.match(line) for line in events), events
    assert not [line for line in events if " error " in f" {line[10:]}"], events
    kinds = [line[10:].split("  ")[0].strip() for line in events]
    # One poll may see the alert and the call's end together: order only start and end.
    assert sorted(kinds) == ["alert", "call ended", "call started"], events
    assert kinds.index("call started") < kinds.index("call ended"), events
    assert "'charged twice'" in events[kinds.index("alert")], events
    # Each line once: nothing printed twice, in the banner or after it.
    repeated = [
        line for line, n in collections.Counter(text.splitlines()).items() if n > 1 and line
    ]
    assert repeated == [], repeated

    # Every process's output is in its log instead, the requests and webhooks with it.
    for name in ("livekit", "daphne", "sweep", "recorder", "calls-0"):
        assert (logs / f"{name}.log").stat().st_size > 0, name
    daphne = (logs / "daphne.log").read_text()
    assert "POST /core/conversations" in daphne, daphne[-3000:]
    assert not [line for line in after if "webhook" in line or "POST" in line], after
    # The app's log lines are written once each, with their level and logger.
    webhooks = [line for line in daphne.splitlines() if "LiveKit webhook" in line]
    assert webhooks, daphne[-3000:]
    assert all(" INFO anyreach_listen.livekit.webhooks: LiveKit webhook" in w for w in webhooks), (
        webhooks
    )
