"""What the benchmarks share: arguments, servers on free ports, wrk, markdown output.

Each ``bench_*.py`` prints only markdown on stdout (a ``### Bn`` heading, a
table, a line saying what was measured) and its diagnostics on stderr.
Servers run in their own process groups and are stopped on any exit, including
Ctrl-C, SIGTERM and SIGHUP.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from tests.support.datastores import postgres_server
from tests.support.processes import http_ok, managed_process, wait_until

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

# The LiveKit credentials the benchmarked servers sign with (no LiveKit server is needed).
LIVEKIT_API_KEY = "benchkey"
LIVEKIT_API_SECRET = "bench-livekit-secret-that-is-long-enough-0123456789"


def log(*parts: object) -> None:
    """A diagnostic line: stderr only, stdout is the report."""
    print(*parts, file=sys.stderr, flush=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so every server's ``finally`` runs."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)


def arguments(description: str | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    return parser.parse_args()


def app_env(database_url: str, redis_url: str = "") -> dict[str, str]:
    """The environment of a production-like server: DEBUG off, the bench settings."""
    return {
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DEBUG": "0",
        "SECRET_KEY": "bench-secret-key-not-for-production-0123456789abcdef",
        "CREDENTIAL_HASH_KEY": "bench-credential-hash-key",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LIVEKIT_URL": "ws://127.0.0.1:7880",
        "LIVEKIT_API_KEY": LIVEKIT_API_KEY,
        "LIVEKIT_API_SECRET": LIVEKIT_API_SECRET,
        "PYTHONUNBUFFERED": "1",
    }


def sqlite_url(directory: Path) -> str:
    # Four slashes: an absolute path for every DATABASE_URL parser (dj-database-url too).
    return f"sqlite:///{directory / 'bench.sqlite3'}"


def logs_dir(name: str) -> Path:
    """``var/bench/NAME/`` (gitignored), emptied: the servers' logs of the latest run."""
    path = ROOT / "var" / "bench" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="anyreach-bench-") as path:
        yield Path(path)


def run_python(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    """``python ARGS`` from the project root with ``env``; its stdout, or an error with stderr."""
    result = subprocess.run(
        [PYTHON, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def session_cookie(world: dict[str, object]) -> str:
    """The seeded supervisor's session as a ``Cookie`` header's ``name=value`` (bench/seed.py)."""
    names = world["cookie_names"]
    assert isinstance(names, dict)
    return f"{names['session']}={world['session_cookie']}"


def migrate(env: dict[str, str]) -> None:
    run_python(env, "manage.py", "migrate", "-v0")


def seed(env: dict[str, str], *args: str) -> dict[str, object]:
    """``bench/seed.py ARGS`` against ``env``'s database: its JSON."""
    data: dict[str, object] = json.loads(run_python(env, "bench/seed.py", *args))
    return data


@contextlib.contextmanager
def daphne(app: str, env: dict[str, str], log_dir: Path, ready_path: str = "/") -> Iterator[str]:
    """Serve ``app`` (``module:attribute``) with daphne on a free loopback port; its base URL."""
    with daphne_workers(app, env, log_dir, ready_path=ready_path) as served:
        yield served.base


@dataclass(frozen=True)
class Served:
    """daphne processes serving one address: its base URL and their process ids."""

    base: str
    pids: tuple[int, ...]

    def cpu_seconds(self) -> float:
        """User and system CPU time the processes used so far (``/proc``)."""
        return sum(_cpu_seconds(pid) for pid in self.pids)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@contextlib.contextmanager
def daphne_workers(
    app: str,
    env: dict[str, str],
    log_dir: Path,
    *,
    workers: int = 1,
    ready_path: str = "/",
    pinned: bool = False,
) -> Iterator[Served]:
    """Serve ``app`` with ``workers`` daphne processes on one free loopback port: each
    accepts from the same listening socket (``daphne --fd``), as several workers under a
    process manager's socket do; the kernel spreads the connections. ``pinned``: worker
    n runs on CPU n (modulo the CPUs) only, as docs/operations/processes.md recommends."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = int(listener.getsockname()[1])
    base = f"http://127.0.0.1:{port}"
    fd = listener.fileno()
    with listener, contextlib.ExitStack() as stack:
        procs = []
        for n in range(workers):
            log_path = log_dir / f"daphne-{port}-{n}.log"
            args = [PYTHON, "-m", "daphne", "--fd", str(fd), app]
            if pinned:
                args = ["taskset", "-c", str(n % (os.cpu_count() or 1)), *args]
            proc = stack.enter_context(
                managed_process(args, env=env, log_path=log_path, pass_fds=[fd])
            )
            procs.append((proc, log_path))

        def ready() -> bool:
            for proc, _ in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"daphne exited with {proc.returncode}")
            return http_ok(base + ready_path)

        try:
            wait_until(ready, timeout=60, what=f"daphne serving {app}")
            # Every worker up: its first request answered (one only accepts once it is).
            for _ in range(4 * workers):
                http_ok(base + ready_path)
        except (TimeoutError, RuntimeError) as exc:
            raise RuntimeError(f"{exc}\n{tail(procs[0][1])}") from None
        pids = tuple(proc.pid for proc, _ in procs)
        log(f"daphne {app} on {base} ({workers} worker(s), pids {pids}, logs in {log_dir})")
        yield Served(base, pids)


def postgres(work: Path) -> contextlib.AbstractContextManager[str]:
    """A throwaway PostgreSQL cluster with its durable defaults (fsync on, unlike the tests').

    Yields a DATABASE_URL; the cluster and its files are gone afterwards; its log is in ``work``.
    """
    return postgres_server(durable=True, database="bench", log_dir=work)


def failure_notes(failures: dict[str, str]) -> list[str]:
    """A benchmark's report lines for the setups that failed (their details are on stderr)."""
    out: list[str] = []
    for what, error in failures.items():
        first = error.splitlines()[0] if error else "?"
        out += ["", f"**{what} failed**: `{first}` (see stderr)."]
    return out


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --- wrk -------------------------------------------------------------------------------

_WRK_SCRIPT = """
-- Generated by bench/support.py: one POST with fixed headers; counts non-2xx per status.
wrk.method = "POST"
wrk.body = ""
{headers}
local threads = {{}}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {{}}
  example = ""
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if (status < 200 or status > 299) and example == "" then
    example = status .. " " .. string.sub(body or "", 1, 300)
  end
end

function done(summary, latency, requests)
  local counts = {{}}
  local first = ""
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
    if first == "" then first = thread:get("example") end
  end
  local parts = {{}}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"max_us": %d, "socket_errors": %d, "timeouts": %d, "statuses": {{%s}}}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect + e.read + e.write, e.timeout, table.concat(parts, ", ")))
  io.write("BENCH_EXAMPLE " .. string.gsub(first, "\\n", " ") .. "\\n")
end
"""


@dataclass(frozen=True)
class Load:
    """One closed-loop load run: ``connections`` clients, each sending as fast as answered."""

    connections: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int]
    socket_errors: int
    example: str

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)


def _lua_string(value: str) -> str:
    if "]==]" in value:
        raise ValueError("header value would end the Lua long string")
    return f"[==[{value}]==]"


def wrk(
    url: str, *, connections: int, seconds: float, headers: dict[str, str], work_dir: Path
) -> Load:
    """POST ``url`` with ``headers`` from ``connections`` keep-alive connections for ``seconds``."""
    lines = [f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items()]
    script = work_dir / f"wrk-{os.getpid()}-{connections}.lua"
    script.write_text(_WRK_SCRIPT.format(headers="\n".join(lines)))
    threads = min(2, connections)
    args = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s"]
    args += ["--timeout", "30s", "-s", str(script), url]
    result = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    match = re.search(r"^BENCH_RESULT (.*)$", result.stdout, re.MULTILINE)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    data = json.loads(match.group(1))
    example = re.search(r"^BENCH_EXAMPLE ?(.*)$", result.stdout, re.MULTILINE)
    load = Load(
        connections=connections,
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        statuses={int(k): int(v) for k, v in data["statuses"].items()},
        socket_errors=int(data["socket_errors"]) + int(data["timeouts"]),
        example=example.group(1).strip() if example else "",
    )
    log(
        f"wrk c={connections} {url}: {load.rps:.0f} req/s, p50 {load.p50_ms:.1f} ms, "
        f"p99 {load.p99_ms:.1f} ms, statuses {load.statuses}, socket errors {load.socket_errors}"
        + (f", first non-2xx: {load.example}" if load.example else "")
    )
    return load


# --- numbers and markdown -------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by the nearest-rank method; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(ours: float, base: float) -> str:
    return f"{ours / base:.2f}x" if base else "n/a"


def num(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"  # nan != nan


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|")

    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(out)
