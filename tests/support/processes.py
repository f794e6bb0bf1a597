"""Real servers for tests: free ports, condition waits with deadlines, clean shutdown."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


# Ports for test servers: below Linux's ephemeral range (32768-60999), where the kernel
# takes the ports of outgoing connections (hundreds at once in the load tests) and of
# bind(0), so a port picked here is not taken by a connection before its server binds it.
PORTS = range(20_000, 32_000)


def _worker_ports() -> list[int]:
    """This process's share of ``PORTS``, shuffled: each pytest-xdist worker its own, so
    two workers never pick the same port."""
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    size = len(PORTS) // max(count, 1)
    share = list(PORTS[index * size : (index + 1) * size])
    random.shuffle(share)
    return share


_ports = itertools.cycle(_worker_ports())


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A loopback port nothing listens on now, of this process's share, not handed out
    again until the share has gone round."""
    for _ in range(len(PORTS)):
        port = next(_ports)
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use
        return port
    raise RuntimeError("no free port left in this worker's share")


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
    pass_fds: Sequence[int] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` in its own process group and kill the whole group on exit
    (``pass_fds``: file descriptors it inherits, such as a listening socket)."""
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        list(args),
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        pass_fds=tuple(pass_fds),
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
def daphne_server(
    port: int,
    env: dict[str, str],
    log_path: Path | None = None,
    *,
    application: str = "config.asgi:application",
    python: str = sys.executable,
    cwd: Path = ROOT,
) -> Iterator[str]:
    """Serve the portal's ASGI app (or ``application`` from ``cwd`` with another
    virtualenv's ``python``) with a real daphne on 127.0.0.1:``port``."""
    args = [python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
    with managed_process([*args, application], env=env, log_path=log_path, cwd=cwd):
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: http_ok(f"{base}/core/openapi.json"), timeout=30, what="daphne")
        except TimeoutError as exc:
            log = log_path.read_text(errors="replace")[-3000:] if log_path else ""
            raise TimeoutError(f"{exc}\n--- daphne log ---\n{log}") from None
        yield base


@dataclass(frozen=True)
class ProcessInfo:
    """A process as /proc shows it; ``start`` (clock ticks after boot) tells a reused pid apart."""

    pid: int
    ppid: int
    start: int
    argv: str


def process_info(pid: int) -> ProcessInfo | None:
    """The process ``pid``, or None when it is gone (or only a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv = (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may hold spaces and parentheses: the fields follow the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return ProcessInfo(pid, int(fields[1]), int(fields[19]), argv.strip())


def descendants(root: int) -> list[ProcessInfo]:
    """Every live process below ``root`` (children, their children, ...)."""
    procs = [
        p for d in Path("/proc").iterdir() if d.name.isdigit() if (p := process_info(int(d.name)))
    ]
    children: dict[int, list[ProcessInfo]] = {}
    for proc in procs:
        children.setdefault(proc.ppid, []).append(proc)
    found: list[ProcessInfo] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def still_running(proc: ProcessInfo) -> bool:
    now = process_info(proc.pid)
    return now is not None and now.start == proc.start


def tcp_port_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:``port`` and a server could bind it again."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
