"""B11: memory of the portal's daphne, of a recorder, and of the whole ``make demo``.

    .venv/bin/python bench/bench_memory.py [--quick]

Measured from outside, in ``/proc/PID/smaps_rollup``: (a) one daphne worker idle and with
500 signed-in portal websockets, on 1,000 live calls, against the bare fan-out app with
the same sockets; (b) one ``run_recorder`` worker (and any process it starts) at 0, 2 and
10 rooms with a talking agent in each, against the floors every ``manage.py`` process
pays; (c) ``manage.py run_demo`` (what ``make demo`` runs) and every process below it
with two calls live. How to read it: bench/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()  # the test support modules read the app's settings

from bench.bench_fanout import listeners, webhook_poster  # noqa: E402
from bench.sdk_probe import ProbeThread  # noqa: E402
from bench.support import (  # noqa: E402
    PYTHON,
    app_env,
    arguments,
    daphne_workers,
    failure_notes,
    log,
    logs_dir,
    migrate,
    seed,
    session_cookie,
    sqlite_url,
    stop_on_signals,
    table,
)
from demo.registration import ApiRegistrar  # noqa: E402
from tests.support.demo_tree import (  # noqa: E402
    demo_processes,
    live_rooms,
    livekit_ports,
)
from tests.support.processes import (  # noqa: E402
    descendants,
    free_port,
    http_ok,
    managed_process,
    process_info,
    wait_until,
)
from tests.support.stack import Stack, recorders, running_stack  # noqa: E402

TARGET_DAPHNE_MB = 300.0  # one worker, 500 sockets, 1,000 live calls (issue 21, target 6)
TARGET_PER_ROOM_MB = 10.0  # a recorder's growth per room
TARGET_DEMO_MB = 700.0  # make demo with two calls, every process
SOCKETS = 500
LIVE_CALLS = 1000
RECORDER_ROOMS = (0, 2, 10)
SETTLE = 5.0  # seconds a measured process gets to reach its steady state first
STEP_TIMEOUT = 90.0
MB = 1024.0  # smaps_rollup counts kB


# --- reading memory ----------------------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    """One process's memory in MB: resident (RSS), its proportional share of each page
    (PSS: a page shared by n processes counts 1/n) and the pages only it maps (USS)."""

    rss: float
    pss: float
    uss: float

    def __add__(self, other: Memory) -> Memory:
        return Memory(self.rss + other.rss, self.pss + other.pss, self.uss + other.uss)


NOTHING = Memory(0.0, 0.0, 0.0)


def memory(pid: int) -> Memory:
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()

    def kb(field: str) -> float:
        found = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
        return int(found.group(1)) if found else 0

    uss = kb("Private_Clean") + kb("Private_Dirty")
    return Memory(kb("Rss") / MB, kb("Pss") / MB, uss / MB)


def threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


@dataclass(frozen=True)
class Measured:
    """A process and what it runs, measured."""

    pid: int
    command: str
    memory: Memory
    threads: int


def measure_tree(root: int) -> list[Measured]:
    """``root`` and every live process below it."""
    found = []
    for pid in [root, *(p.pid for p in descendants(root))]:
        info = process_info(pid)
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            if info is not None:
                found.append(Measured(pid, _short(info.argv), memory(pid), threads(pid)))
    return found


def total(processes: list[Measured]) -> Memory:
    return sum((p.memory for p in processes), NOTHING)


def _short(argv: str) -> str:
    """The command without the interpreter's and the project's paths."""
    words = argv.replace(str(ROOT) + "/", "").split()
    if words and (words[0].endswith(("python", "python3")) or "/python3." in words[0]):
        words = words[1:]
    text = " ".join(w if len(w) < 40 else w[:37] + "…" for w in words)
    return text[:90]


def mb(value: float) -> str:
    return f"{value:,.0f}"


# --- (a) one daphne worker with 500 portal websockets ---------------------------------------


@dataclass(frozen=True)
class DaphneRow:
    app: str
    idle: Memory
    loaded: Memory
    sockets: int
    live_calls: int


def _warm(base: str, path: str) -> None:
    for _ in range(20):
        http_ok(base + path)


def daphne_memory(work: Path, sockets: int, live: int) -> list[DaphneRow]:
    directory = work / "daphne"
    directory.mkdir()
    env = app_env(sqlite_url(directory))
    migrate(env)
    world = seed(env, "--live", str(live))
    conversation = str(world["conversations"][0])  # type: ignore[index]
    room = f"{world['slug']}-room-0"
    headers = {"Cookie": session_cookie(world)}

    def ours_event(message: dict[str, Any]) -> bool:
        return message.get("conversation", {}).get("id") == conversation

    def bare_event(message: dict[str, Any]) -> bool:
        return message.get("type") == "conversation.updated"

    rows = []
    runs: list[tuple[str, str, str, str, dict[str, str], Callable[[dict[str, Any]], bool]]] = [
        (
            "ours",
            "config.asgi:application",
            "/core/openapi.json",
            "/ws/listen/events/",
            headers,
            ours_event,
        ),
        ("bare fan-out", "bench.bare_fanout:application", "/", "/ws/", {}, bare_event),
    ]
    for label, app, ready, ws_path, ws_headers, expected in runs:
        log(f"B11 (a): {label} daphne, idle then {sockets} websockets")
        with daphne_workers(app, env, directory, ready_path=ready) as served:
            pid = served.pids[0]
            _warm(served.base, ready)
            time.sleep(SETTLE)
            idle = memory(pid)
            urls = [served.base.replace("http://", "ws://") + ws_path] * sockets
            if label == "ours":
                post = webhook_poster(f"{served.base}/livekit/webhook", room)
            else:
                post = _bare_send(f"{served.base}/send")
            loaded = asyncio.run(_with_sockets(pid, urls, ws_headers, expected, post))
            rows.append(DaphneRow(label, idle, loaded, sockets, live))
            log(f"  {label}: idle {idle}, with sockets {loaded}")
    return rows


def _bare_send(url: str) -> Callable[[Any, int], Any]:
    async def post(session: Any, i: int) -> None:
        async with session.post(url) as response:
            if response.status != 200:
                raise RuntimeError(f"bare send: {response.status}")

    return post


async def _with_sockets(
    pid: int,
    urls: list[str],
    headers: dict[str, str],
    expected: Callable[[dict[str, Any]], bool],
    post: Callable[[Any, int], Any],
) -> Memory:
    """Connect the sockets, fan one event out to them all (each consumer does its work),
    then measure the server while they are open."""
    async with listeners(urls, headers, expected) as (group, session):
        _, missing = await group.round(lambda: post(session, 0))
        if missing:
            log(f"  {missing} socket(s) did not receive the event")
        await asyncio.sleep(SETTLE)
        return memory(pid)


# --- (b) a recorder at 0, 2 and 10 rooms ----------------------------------------------------


@dataclass(frozen=True)
class RecorderRow:
    rooms: int
    processes: list[Measured]

    @property
    def memory(self) -> Memory:
        return total(self.processes)


def recorder_memory(work: Path, room_counts: tuple[int, ...]) -> list[RecorderRow]:
    rows: list[RecorderRow] = []
    directory = work / "recorder"
    directory.mkdir()
    with running_stack(directory) as stack, recorders(stack, 1) as pool, _calls(stack) as call:
        pid = pool.procs[0].pid
        rooms: list[str] = []
        for count in room_counts:
            while len(rooms) < count:
                rooms.append(call())
            wait_until(
                lambda: all(pool.recording(room) for room in rooms),
                timeout=STEP_TIMEOUT,
                interval=0.5,
                what=f"the recorder in {len(rooms)} room(s)",
            )
            time.sleep(SETTLE)  # a few transcript lines in every room
            row = RecorderRow(count, measure_tree(pid))
            log(f"B11 (b): recorder at {count} room(s): {row.memory}, {len(row.processes)} proc")
            rows.append(row)
    return rows


@contextlib.contextmanager
def _calls(stack: Stack) -> Iterator[Callable[[], str]]:
    """Start calls: each a conversation registered through the API, as a platform does
    (the portal then dispatches the recorder), and an agent that says a line a second."""
    registrar = ApiRegistrar(stack.base_url, stack.seed["api_keys"]["manage"])
    agents: list[ProbeThread] = []

    def call() -> str:
        room = f"bench-memory-{uuid.uuid4().hex[:8]}"
        registrar.register(room, {"agent_label": "Bench agent", "caller_label": "+1 555 0199"})
        token = stack.livekit.token(
            room, f"agent-{room}", kind="agent", can_publish=True, can_publish_data=True
        )
        agent = ProbeThread(stack.livekit.url, token, interval=1.0, stream=True)
        agent.start()
        agent.wait_started(timeout=STEP_TIMEOUT)
        agents.append(agent)
        return room

    try:
        yield call
    finally:
        for agent in agents:
            with contextlib.suppress(Exception):
                agent.finish(timeout=15)


# The floors a manage.py process pays before it does anything, for comparison.
FLOORS = [
    ("Python alone", "pass"),
    ("django.setup() (config.settings)", "import django; django.setup()"),
    (
        "django.setup() + livekit.agents imported",
        "import django; django.setup(); import livekit.agents",
    ),
]


def floors(work: Path) -> list[tuple[str, Memory]]:
    measured = []
    for label, code in FLOORS:
        ready = work / f"floor-{uuid.uuid4().hex[:6]}"
        script = f"{code}\nimport pathlib, time\npathlib.Path({str(ready)!r}).touch()\n"
        script += "time.sleep(600)"
        env = {"DATABASE_URL": sqlite_url(work), "PYTHONPATH": str(ROOT)}
        with managed_process([PYTHON, "-c", script], env=env) as proc:
            wait_until(ready.exists, timeout=60, what=label)
            time.sleep(1)
            measured.append((label, memory(proc.pid)))
    return measured


# --- (c) make demo with two calls ------------------------------------------------------------


def demo_memory(work: Path, lanes: int) -> list[Measured]:
    """``manage.py run_demo`` (``make demo``'s command) on free ports with ``lanes`` calls;
    measured once every call is live and recorded."""
    directory = work / "demo"
    directory.mkdir()
    port, lk_port = free_port(), livekit_ports()
    database = f"sqlite:///{directory / 'demo.sqlite3'}"
    marker = f"DATABASE_URL={database}\0".encode()
    args = [PYTHON, "manage.py", "run_demo", "--port", str(port), "--livekit-port", str(lk_port)]
    args += ["--lanes", str(lanes), "--log-dir", str(directory / "logs")]
    env = {**os.environ, "DATABASE_URL": database, "PYTHONUNBUFFERED": "1"}
    recorder_log = directory / "logs" / "recorder.log"
    with open(directory / "run_demo.out", "wb") as out:
        demo = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE,
            start_new_session=True,
        )
    try:
        log(f"B11 (c): run_demo on :{port}, LiveKit on :{lk_port}, waiting for {lanes} calls")

        def calls_recorded() -> bool:
            assert demo.poll() is None, (directory / "run_demo.out").read_text()
            live = [n for n in live_rooms(f"http://127.0.0.1:{lk_port}") if n >= 1]
            text = recorder_log.read_text(errors="replace") if recorder_log.exists() else ""
            # The seeded call's room is open too, empty; a call's room holds its agent
            # and caller (its recorder is hidden: not counted).
            return len(live) >= lanes and text.count("recording room") >= lanes

        wait_until(calls_recorded, timeout=180, interval=1.0, what=f"{lanes} live calls")
        time.sleep(SETTLE)
        measured = measure_tree(demo.pid)
        log(f"  {len(measured)} processes, {total(measured)}")
        return measured
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(demo.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            demo.wait(timeout=20)
        for pid in demo_processes(marker):  # whatever outlived it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(timeout=10)


# --- the report --------------------------------------------------------------------------------


def _process_rows(processes: list[Measured]) -> list[list[object]]:
    return [
        [p.command, p.threads, mb(p.memory.rss), mb(p.memory.pss), mb(p.memory.uss)]
        for p in processes
    ]


def _met(value: float, target: float) -> str:
    if value <= target:
        return f"met ({target - value:,.0f} MB under)"
    return f"NOT met ({value - target:,.0f} MB over)"


def report(
    daphne: list[DaphneRow],
    recorder: list[RecorderRow],
    floor: list[tuple[str, Memory]],
    demo: list[Measured],
    failures: dict[str, str],
) -> str:
    out = ["### B11 Memory", ""]
    mem_headers = ["RSS MB", "PSS MB", "USS MB"]
    targets = ["", "Targets:"]
    if daphne:
        out += [
            f"(a) One daphne worker on {daphne[0].live_calls:,} live calls (SQLite), idle and with "
            f"{daphne[0].sockets} websockets open after one event fanned out to them all:",
            "",
            table(
                [
                    "app",
                    "sockets",
                    "idle RSS MB",
                    "with sockets RSS MB",
                    "growth MB",
                    "per socket KB",
                    "with sockets PSS MB",
                ],
                [
                    [
                        r.app,
                        r.sockets,
                        mb(r.idle.rss),
                        mb(r.loaded.rss),
                        mb(r.loaded.rss - r.idle.rss),
                        f"{(r.loaded.rss - r.idle.rss) * 1024 / r.sockets:,.0f}",
                        mb(r.loaded.pss),
                    ]
                    for r in daphne
                ],
            ),
            "",
        ]
        ours = daphne[0]
        targets.append(
            f"- one daphne worker, {ours.sockets} sockets, {ours.live_calls:,} live calls: RSS "
            f"{mb(ours.loaded.rss)} MB (target ≤ {TARGET_DAPHNE_MB:.0f} MB): "
            f"{_met(ours.loaded.rss, TARGET_DAPHNE_MB)}"
        )
    if recorder:
        base = recorder[0]
        rows = []
        for r in recorder:
            per_room = (r.memory.pss - base.memory.pss) / r.rooms if r.rooms else float("nan")
            rows.append(
                [
                    r.rooms,
                    len(r.processes),
                    max(p.threads for p in r.processes),
                    mb(r.memory.rss),
                    mb(r.memory.pss),
                    mb(r.memory.uss),
                    "" if per_room != per_room else f"{per_room:,.1f}",
                ]
            )
        out += [
            "(b) One `run_recorder` worker (with any process below it) at 0, 2 and 10 rooms, "
            "each with an agent saying a line a second:",
            "",
            table(["rooms", "processes", "threads", *mem_headers, "PSS per room vs 0 MB"], rows),
            "",
            "What any `manage.py` process pays before it does anything (baseline):",
            "",
            table(
                ["process", *mem_headers], [[k, mb(m.rss), mb(m.pss), mb(m.uss)] for k, m in floor]
            ),
            "",
        ]
        last = recorder[-1]
        growth = (last.memory.pss - base.memory.pss) / last.rooms if last.rooms else 0.0
        targets.append(
            f"- recorder: {mb(base.memory.pss)} MB PSS at 0 rooms, {growth:,.1f} MB more per "
            f"room at {last.rooms} (target ≤ {TARGET_PER_ROOM_MB:.0f} MB a room): "
            f"{_met(growth, TARGET_PER_ROOM_MB)}"
        )
    if demo:
        whole = total(demo)
        out += [
            "(c) `manage.py run_demo` (what `make demo` runs, without `make` itself) and every "
            "process below it, two calls live and recorded:",
            "",
            table(
                ["process", "threads", *mem_headers],
                [
                    *_process_rows(demo),
                    ["**total**", "", mb(whole.rss), mb(whole.pss), mb(whole.uss)],
                ],
            ),
            "",
        ]
        targets.append(
            f"- `make demo` with two calls: {mb(whole.pss)} MB, the sum of PSS over its "
            f"{len(demo)} processes (target ≤ {TARGET_DEMO_MB:.0f} MB): "
            f"{_met(whole.pss, TARGET_DEMO_MB)}"
        )
    out.append(
        "Measured: `/proc/PID/smaps_rollup` of each process once it has run "
        f"{SETTLE:.0f} s in the state shown. RSS counts every page a process maps, so summed "
        "over processes it counts each shared page (the Python interpreter and its libraries, "
        "LiveKit's Rust FFI, copy-on-write pages of a forked worker) once per process; PSS "
        "splits each shared page among the processes that map it, so the sum of PSS is what "
        "the processes take together: the totals are sums of PSS. USS: the pages only that "
        "process maps. (a) uses the RSS the target names (one process: it counts its "
        "libraries once); its baseline is `bench/bare_fanout.py` on the same daphne with the "
        "same sockets (no Django session, database or visibility check)."
    )
    out += targets
    out += failure_notes(failures)
    return "\n".join(out)


def main() -> int:
    stop_on_signals()
    args = arguments(__doc__)
    work = logs_dir("memory")
    log(f"logs: {work}")
    failures: dict[str, str] = {}
    sockets, live = (100, 100) if args.quick else (SOCKETS, LIVE_CALLS)
    rooms = (0, 2) if args.quick else RECORDER_ROOMS
    daphne: list[DaphneRow] = []
    recorder: list[RecorderRow] = []
    floor: list[tuple[str, Memory]] = []
    demo: list[Measured] = []
    steps: list[tuple[str, Callable[[], None]]] = [
        ("(a) daphne", lambda: daphne.extend(daphne_memory(work, sockets, live))),
        ("(b) recorder", lambda: recorder.extend(recorder_memory(work, rooms))),
        ("(b) floors", lambda: floor.extend(floors(work))),
        ("(c) make demo", lambda: demo.extend(demo_memory(work, lanes=2))),
    ]
    for what, step in steps:
        try:
            step()
        except Exception as exc:
            log(f"{what} failed: {exc!r}")
            failures[what] = f"{type(exc).__name__}: {exc}"
    print(report(daphne, recorder, floor, demo, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
