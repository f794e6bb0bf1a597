"""Real servers for tests: free ports, condition waits with deadlines, clean shutdown."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until[T](
    condition: Callable[[], T | None], *, timeout: float, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # the condition may fail until the server is up
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or condition}: {last_error}")


def run_manage(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    """``manage.py ARGS`` in a subprocess with ``env``; its stdout, or an error with stderr."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def http_ok(url: str) -> bool:
    return httpx.get(url, timeout=1.0).status_code < 500


@contextlib.contextmanager
def managed_process(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    cwd: Path = ROOT,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` in its own process group and kill the whole group on exit."""
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        list(args),
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if log_path:
            log.close()  # type: ignore[union-attr]


@contextlib.contextmanager
def daphne_server(port: int, env: dict[str, str], log_path: Path | None = None) -> Iterator[str]:
    """Serve the portal's ASGI app with a real daphne on 127.0.0.1:``port``."""
    args = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
    with managed_process([*args, "config.asgi:application"], env=env, log_path=log_path):
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(f"{base}/core/openapi.json"), timeout=30, what="daphne")
        yield base
