"""``demo/sweep_thread.py``: the demo's periodic sweep runs as a thread of run_demo and
writes what it says, logs and warns to its own log file, never to the terminal (the
process's own handlers)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from demo.sweep_thread import SweepThread
from tests.support.processes import free_port, wait_until
from tests.support.world import build_world

AWAY = "LiveKit did not list its rooms: no call closed"


class _Terminal(logging.Handler):
    """Stands for the process's console handler: keeps what reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.django_db(transaction=True)  # the thread's own connection sees the calls
def test_the_sweep_thread_writes_its_rounds_and_logs_to_its_file_not_the_terminal(
    tmp_path: Path, settings: Any
) -> None:
    build_world()  # live calls with rooms: each round asks LiveKit about them
    # Nothing listens on this port: each round finds LiveKit away, says so and logs it.
    away = f"ws://127.0.0.1:{free_port()}"
    settings.ANYREACH_LISTEN = {**settings.ANYREACH_LISTEN, "LIVEKIT_URL": away}
    terminal = _Terminal()
    root = logging.getLogger()
    root.addHandler(terminal)
    log_path = tmp_path / "sweep.log"
    stop = threading.Event()
    thread = SweepThread(0.05, log_path, stop)
    try:
        thread.start()
        wait_until(
            lambda: log_path.read_text().count(AWAY) >= 2, timeout=30, what="two sweep rounds"
        )
    finally:
        stop.set()
        thread.join(timeout=30)
        root.removeHandler(terminal)
    assert not thread.is_alive()
    text = log_path.read_text()
    assert text.startswith("sweep_listeners every 0.05 s, in run_demo's process\n"), text
    assert " WARNING anyreach_listen.livekit.reconciliation: LiveKit did not list" in text, text
    assert [r.getMessage() for r in terminal.records if r.thread == thread.ident] == []
    # Once it stopped, the process's handlers take every thread's records again.
    logging.getLogger("anyreach_listen").warning("after the sweep")
    assert "after the sweep" not in log_path.read_text()
