"""The demo's periodic ``sweep_listeners``, as a thread of ``run_demo``.

A process of its own would pay the whole Django floor (about 80 MB) to run a few queries
every few seconds; run_demo has Django set up already. What the sweep prints, logs and
warns goes to its own log file, as the process's output did, never to the terminal.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from django.db import connections

from anyreach_listen.management.commands.sweep_listeners import Command as SweepListeners

THREAD_NAME = "sweep_listeners"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class SweepThread(threading.Thread):
    """One sweep round every ``every`` seconds, the first at once, until ``stop`` is set."""

    def __init__(self, every: float, log_path: Path, stop: threading.Event) -> None:
        super().__init__(name=THREAD_NAME, daemon=True)
        self.every = every
        self.log_path = log_path
        self.stop = stop

    def run(self) -> None:
        with open(self.log_path, "a", buffering=1) as out, _records_of_this_thread_to(out):
            out.write(f"sweep_listeners every {self.every:g} s, in run_demo's process\n")
            command = SweepListeners(stdout=out, stderr=out)
            try:
                while not self.stop.is_set():
                    command.sweep_round(repeating=True)
                    if self.stop.wait(self.every):
                        return
            finally:
                connections.close_all()  # this thread's own database connection


class _ThisThread(logging.Filter):
    def __init__(self, wanted: bool) -> None:
        super().__init__()
        self.ident = threading.get_ident()
        self.wanted = wanted

    def filter(self, record: logging.LogRecord) -> bool:
        return (record.thread == self.ident) == self.wanted


@contextlib.contextmanager
def _records_of_this_thread_to(out: TextIO) -> Iterator[None]:
    """Route the calling thread's log records (and warnings: PyJWT warns on every token
    signed with the dev server's short secret) to ``out``, and no longer to the
    process's own handlers, which write to the terminal."""
    root = logging.getLogger()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(_ThisThread(wanted=True))
    elsewhere = _ThisThread(wanted=False)
    others = list(root.handlers)
    for other in others:
        other.addFilter(elsewhere)
    root.addHandler(handler)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        for other in others:
            other.removeFilter(elsewhere)
