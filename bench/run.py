"""Run every benchmark and write BENCHMARKS.md (``make bench``; ``make bench QUICK=1``).

    .venv/bin/python bench/run.py [--quick] [--output PATH]

Each ``bench/bench_*.py`` runs as its own process, in a fixed order and then any
other, so none is silently skipped and one that fails still leaves the others' numbers
in the report. Where a quick run writes and what the exit status means: bench/README.md.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import glob
import importlib.metadata
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
STDERR_TAIL = 40


@dataclass(frozen=True)
class Benchmark:
    label: str
    file: str
    title: str
    markdown: bool = True  # False: plain text, shown in a code block
    quick_args: tuple[str, ...] = ("--quick",)
    timeout: float = 45 * 60  # seconds; a quarter of that with --quick


PLAN = [
    Benchmark("B1", "bench_api.py", "Listener-token endpoint under load"),
    Benchmark("B2, B3, B6", "bench_sdk.py", "Browser SDK"),
    Benchmark("B4", "bench_fanout.py", "Event fan-out to portal websockets"),
    Benchmark("B5", "bench_pages.py", "Dashboard and wall with 1,000 live calls"),
    Benchmark("B7", "bench_alerts.py", "Live alert latency: phrase said → dashboard"),
    Benchmark("B8", "bench_guidance.py", "Guidance to the agent: acknowledged, and heard"),
    Benchmark("B9", "bench_takeover.py", "Take over and hand back: the agent silent, and back"),
    Benchmark("B10", "bench_access_loss.py", "Access lost: the listener out of the room"),
    Benchmark("B11", "bench_memory.py", "Memory"),
    Benchmark(
        "Mint",
        "bench_mint.py",
        "Minting cost in one process (microbenchmark)",
        markdown=False,
        quick_args=("--n", "200"),
    ),
]


@dataclass
class Outcome:
    benchmark: Benchmark
    status: str  # "ok", "failed (exit N)", "timed out", "missing"
    seconds: float
    section: str


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def plan() -> list[Benchmark]:
    """The fixed order, then any other bench_*.py so nothing is silently skipped."""
    known = {b.file for b in PLAN}
    extra = sorted(p.name for p in BENCH.glob("bench_*.py") if p.name not in known)
    return PLAN + [Benchmark("Other", name, name.removesuffix(".py")) for name in extra]


def _echo(stream: object, prefix: str, tail: collections.deque[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        tail.append(line.rstrip("\n"))
        sys.stderr.write(f"[{prefix}] {line}")
        sys.stderr.flush()


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the benchmark (it stops its own servers), then SIGKILL its group if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def run_one(benchmark: Benchmark, quick: bool) -> Outcome:
    path = BENCH / benchmark.file
    heading = f"### {benchmark.label} {benchmark.title}"
    if not path.exists():
        section = f"{heading}\n\nNot run: `bench/{benchmark.file}` is missing."
        return Outcome(benchmark, "missing", 0.0, section)
    args = [sys.executable, str(path), *(benchmark.quick_args if quick else ())]
    timeout = benchmark.timeout / 4 if quick else benchmark.timeout
    print(f"== {benchmark.label}: {' '.join(args[1:])}", file=sys.stderr, flush=True)
    start = time.monotonic()
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # Ctrl-C reaches run.py, which stops it in order
    )
    out: list[str] = []
    readers = [
        threading.Thread(target=_echo, args=(proc.stderr, benchmark.file, tail), daemon=True),
        threading.Thread(target=lambda: out.extend(proc.stdout or ()), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        proc.wait(timeout=timeout)
        status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout:.0f} s"
    finally:
        _stop(proc)
        for reader in readers:
            reader.join(timeout=10)
    seconds = time.monotonic() - start
    body = "".join(out).strip()
    if not benchmark.markdown and body:
        where = f"Measured: `bench/{benchmark.file}`, see its docstring."
        body = f"{heading}\n\n```\n{body}\n```\n\n{where}"
    if not body.startswith("###"):
        body = f"{heading}\n\n{body}".rstrip()
    if status != "ok":
        stderr_tail = "\n".join(tail)
        body += f"\n\n**{status}**; the end of its stderr:\n\n```\n{stderr_tail}\n```"
    return Outcome(benchmark, status, seconds, body)


# --- the header --------------------------------------------------------------------------


def _command_output(args: list[str]) -> str:
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=30, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (result.stdout or result.stderr).strip()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = found.group(1).strip() if found else platform.processor() or "?"
    memory = "?"
    with contextlib.suppress(OSError):
        found = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        memory = f"{int(found.group(1)) / 2**20:.1f} GiB" if found else "?"
    nproc = _command_output(["nproc"]) or str(os.cpu_count())
    postgres = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    tools = [
        _command_output(["wrk", "--version"]).split(" Copyright")[0:1],
        _command_output([postgres[-1], "--version"]).splitlines()[0:1] if postgres else [],
        _command_output(["redis-server", "--version"]).split(" sha=")[0:1],
    ]
    return (
        f"{nproc} CPUs (`nproc`), {memory} memory, {cpu}; "
        f"Python {platform.python_version()}, Django {_version('Django')}, "
        f"daphne {_version('daphne')}, channels {_version('channels')}, "
        f"channels-redis {_version('channels-redis')}, livekit-api {_version('livekit-api')}; "
        + "; ".join(t[0] for t in tools if t and t[0])
    )


def load_average() -> str:
    """The 1-minute load average: how busy the machine was besides the benchmarks' own work."""
    with contextlib.suppress(OSError, IndexError):
        return Path("/proc/loadavg").read_text().split()[0]
    return "?"


def revision() -> str:
    """The commit measured, read when the run starts (others may commit during it)."""
    commit = _command_output(["git", "rev-parse", "--short", "HEAD"]) or "?"
    dirty = _command_output(["git", "status", "--porcelain", "--untracked-files=no"])
    return f"{commit}{' with uncommitted changes' if dirty else ''}"


def header(
    command: str,
    started: dt.datetime,
    commit: str,
    loads: tuple[str, str],
    outcomes: list[Outcome],
) -> str:
    rows = "\n".join(
        f"| {o.benchmark.label} | `bench/{o.benchmark.file}` | {o.status} | {o.seconds:.0f} |"
        for o in outcomes
    )
    return "\n".join(
        [
            "# Benchmarks",
            "",
            f"Command: `{command}` (bench/run.py). Date: {started:%Y-%m-%d %H:%M} UTC. "
            f"Commit at the start: {commit}.",
            "",
            f"Machine: {machine()}. Load average (1 min): {loads[0]} before the run, "
            f"{loads[1]} after it.",
            "",
            "The load generators, the servers and the databases share these CPUs: compare "
            "ratios within one run, not absolute numbers across runs or machines.",
            "",
            "| benchmark | file | result | seconds |",
            "|---|---|---|---|",
            rows,
        ]
    )


def main() -> int:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short smoke runs")
    parser.add_argument("--output", type=Path, help="where to write the report")
    args = parser.parse_args()
    output = args.output or (
        ROOT / "var" / "bench" / "BENCHMARKS.quick.md" if args.quick else ROOT / "BENCHMARKS.md"
    )
    started, load_before, commit = dt.datetime.now(dt.UTC), load_average(), revision()
    outcomes = [run_one(benchmark, args.quick) for benchmark in plan()]
    loads = (load_before, load_average())
    command = "make bench QUICK=1" if args.quick else "make bench"
    report = "\n\n".join(
        [header(command, started, commit, loads, outcomes), *(o.section for o in outcomes)]
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report + "\n")
    print(report)
    print(f"\nWritten to {output}", file=sys.stderr)
    return 0 if all(o.status in ("ok", "missing") for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
