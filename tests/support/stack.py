"""The real stack of the end-to-end tests and the simulated calls run against it.

``Stack`` is what the session-wide ``stack`` fixture (``tests/e2e/conftest.py``)
builds: a migrated, seeded SQLite file, ``livekit-server --dev`` and daphne.
``simulated_call`` runs ``manage.py simulate_call`` against it; ``recorders``
runs ``manage.py run_recorder`` workers against it (none run otherwise, so the
stack's dispatches of recorders go unanswered in the other tests).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.livekit import LiveKitServer, livekit_server
from tests.support.processes import ROOT, daphne_server, free_port, run_manage, wait_until


@dataclass
class Stack:
    tmp: Path
    env: dict[str, str]
    base_url: str
    livekit: LiveKitServer
    seed: dict[str, Any]
    db_path: Path

    def manage(self, *args: str, timeout: float = 60) -> str:
        return run_manage(self.env, *args, timeout=timeout)

    def query(self, sql: str, *params: object) -> list[sqlite3.Row]:
        """Read the servers' database directly (read-only)."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)) as db:
            db.row_factory = sqlite3.Row
            return db.execute(sql, params).fetchall()

    def mint(self, conversation_id: str, key: str) -> httpx.Response:
        return httpx.post(
            f"{self.base_url}/core/conversations/{conversation_id}/listener-token",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )


@contextlib.contextmanager
def running_stack(tmp: Path) -> Iterator[Stack]:
    """``livekit-server --dev`` with webhooks to daphne, on a migrated, seeded SQLite file."""
    db_path = tmp / "db.sqlite3"
    daphne_port = free_port()
    webhook = f"http://127.0.0.1:{daphne_port}/livekit/webhook"
    with livekit_server(tmp, [webhook]) as lk:
        env = {
            "DATABASE_URL": f"sqlite:///{db_path}",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PYTHONUNBUFFERED": "1",
            **lk.env(),
        }
        stack = Stack(tmp, env, "", lk, {}, db_path)
        stack.manage("migrate", "-v0")
        stack.seed = json.loads(stack.manage("seed_demo", "--json"))
        with daphne_server(daphne_port, env, log_path=tmp / "daphne.log") as base:
            stack.base_url = base
            # simulate_call registers its calls through the REST API.
            env["ANYREACH_API_URL"] = base
            env["ANYREACH_API_KEY"] = stack.seed["api_keys"]["manage"]
            # run_recorder workers deliver what they hear to daphne.
            env["ANYREACH_PORTAL_URL"] = base
            yield stack


@dataclass
class Call:
    conversation_id: str
    room_name: str
    proc: subprocess.Popen[bytes]
    report_path: Path
    log_path: Path

    def report(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.report_path.read_text())
        return data

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stdout_rest(self) -> bytes:
        """What the command printed after its JSON line (read once it has exited)."""
        assert self.proc.stdout is not None and self.proc.poll() is not None
        return self.proc.stdout.read()


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        buffer = b""
        while not buffer.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                raise TimeoutError(f"no line from simulate_call in {timeout}s")
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buffer += chunk
        return buffer


@contextlib.contextmanager
def simulated_call(stack: Stack, *args: str) -> Iterator[Call]:
    """Run ``manage.py simulate_call --json`` and hand over its conversation while it runs."""
    name = f"call-{time.monotonic_ns()}"
    report, log = stack.tmp / f"{name}.json", stack.tmp / f"{name}.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "simulate_call", "--json", "--report", str(report),
             *args],
            cwd=ROOT,
            env={**os.environ, **stack.env},
            stdout=subprocess.PIPE,
            stderr=log_file,
            start_new_session=True,
        )  # fmt: skip
        try:
            line = _read_line(proc, timeout=60)
            data = json.loads(line)
            assert set(data) == {"conversation_id", "room_name"}
            yield Call(data["conversation_id"], data["room_name"], proc, report, log)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # the command cleans up on SIGTERM
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()


class Recorders:
    """``manage.py run_recorder`` workers on the stack, each in a process group of its own."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self, timeout: float = 90) -> int:
        """Start one more worker and wait until LiveKit registered it; its index."""
        index = len(self.procs)
        log = self.stack.tmp / f"recorder-{time.monotonic_ns()}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "manage.py", "run_recorder", "--portal-url", self.stack.base_url],
                cwd=ROOT,
                env={**os.environ, **self.stack.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        self.logs.append(log)
        wait_until(
            lambda: proc.poll() is None and "registered worker" in self.log(index),
            timeout=timeout,
            what=f"recorder {index} to register with LiveKit",
        )
        return index

    def log(self, index: int) -> str:
        return self.logs[index].read_text(errors="replace")

    def recording(self, room: str) -> list[int]:
        """The workers whose log says they joined ``room``."""
        return [i for i in range(len(self.procs)) if f"recording room {room} " in self.log(i)]

    def kill(self, index: int) -> None:
        """SIGKILL the worker's whole group, as a crash or an OOM kill would end it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[index].pid, signal.SIGKILL)
        self.procs[index].wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@contextlib.contextmanager
def recorders(stack: Stack, count: int) -> Iterator[Recorders]:
    """``count`` recorder workers, registered with the stack's LiveKit; all stopped on exit."""
    pool = Recorders(stack)
    try:
        for _ in range(count):
            pool.start()
        yield pool
    finally:
        pool.stop()
