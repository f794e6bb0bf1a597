"""Real PostgreSQL and Redis servers on free loopback ports, for scale-out tests."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.support.processes import free_port, managed_process, wait_until


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    if not found[-1]:
        raise RuntimeError(f"PostgreSQL's {name} is missing: run `make system-packages`.")
    return found[-1]


def _as_postgres(args: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; CI runs as root.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@contextlib.contextmanager
def postgres_server(
    *, durable: bool = False, database: str = "anyreach", log_dir: Path | None = None
) -> Iterator[str]:
    """A throwaway cluster; yields a DATABASE_URL for a fresh database. ``durable`` keeps
    PostgreSQL's fsync (the benchmarks' setting; tests do without it); the server's log
    goes to ``log_dir`` when given."""
    data = tempfile.mkdtemp(prefix="anyreach-pg-")
    try:
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
        subprocess.run(
            _as_postgres([_postgres_bin("initdb"), "-D", data, "-A", "trust", "-U", "postgres"]),
            check=True,
            capture_output=True,
        )
        port = free_port()
        server = [_postgres_bin("postgres"), "-D", data, "-p", str(port)]
        server += ["-h", "127.0.0.1", "-k", data]
        server += [] if durable else ["-c", "fsync=off"]
        log_path = log_dir / f"postgres-{port}.log" if log_dir else None
        with managed_process(_as_postgres(server), log_path=log_path):
            createdb = [_postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(port),
                        "-U", "postgres", database]  # fmt: skip
            # The port opens while the server still answers "starting up": retry.
            wait_until(
                lambda: (
                    _port_open(port)
                    and subprocess.run(createdb, capture_output=True).returncode == 0
                ),
                timeout=30,
                what="postgres accepting connections (createdb)",
            )
            yield f"postgres://postgres@127.0.0.1:{port}/{database}"
    finally:
        shutil.rmtree(data, ignore_errors=True)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A Redis without persistence; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is missing: run `make system-packages`.")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with managed_process(args):
        wait_until(lambda: _port_open(port), timeout=15, what="redis")
        yield f"redis://127.0.0.1:{port}/0"
