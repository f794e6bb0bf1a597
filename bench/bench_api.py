"""B1: the listener-token endpoint under load, against a bare signer and the Django floor.

    .venv/bin/python bench/bench_api.py [--quick]

wrk drives, in one run: ``bench/bare_signer.py`` (a bare ASGI app signing the same JWT)
under daphne; the Django floor (``bench/urls.py``: a bare Django view signing it, through
the project's middleware, on the same daphne as ours); both token doors (API key, portal
session) on one daphne on SQLite and on PostgreSQL; and the API door on the setup the
README recommends for production (several daphne workers, PostgreSQL, Redis). Each cell's
ratio is its throughput over the bare signer's, measured again just before it at the same
concurrency: this machine's speed drifts by tens of percent within minutes, so a signer
measured once at the start would compare two different machines. How to read it:
bench/README.md.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.support import (
    Load,
    Served,
    app_env,
    arguments,
    daphne_workers,
    failure_notes,
    log,
    logs_dir,
    migrate,
    num,
    postgres,
    seed,
    session_cookie,
    sqlite_url,
    stop_on_signals,
    table,
    wrk,
)
from tests.support.datastores import redis_server

CONCURRENCY = (1, 16, 64)
WORKERS = 2  # the production row: one daphne worker per core of this machine
TARGET_RATIO = 0.10
TARGET_P99_MS = {"SQLite": 250.0, "PostgreSQL": 100.0}
TARGET_CLIENTS = 16
ERRORS_CLIENTS = 64

SIGNER = "bare ASGI signer"
FLOOR = "Django floor"
API = "API key"
PORTAL = "portal session"
PRODUCTION = f"PostgreSQL + Redis, {WORKERS} daphne"


@dataclass(frozen=True)
class Cell:
    """One wrk run and the CPU time its server processes spent per answered request;
    ``signer_rps``: the bare signer's throughput at the same clients just before (None
    in the signer's own row)."""

    load: Load
    cpu_ms: float
    signer_rps: float | None = None

    def share(self, signer: Row) -> float:
        """Throughput over the signer's: the one measured beside it, else the signer row's."""
        base = self.signer_rps or signer.cells[self.load.connections].load.rps
        return self.load.rps / base if base else 0.0


@dataclass(frozen=True)
class Row:
    setup: str  # "SQLite", "PostgreSQL", PRODUCTION, or "" for the signer
    door: str
    cells: dict[int, Cell]
    queries: int | None = None


def paired_seconds(seconds: float) -> int:
    """How long the signer runs before each cell: half the cell, whole seconds (wrk's)."""
    return max(1, round(seconds / 2))


def _measure(
    served: Served,
    path: str,
    headers: dict[str, str],
    work: Path,
    seconds: float,
    signer: Served | None = None,
) -> dict[int, Cell]:
    """Each concurrency's cell; with ``signer``, each right after the signer's at it."""
    cells: dict[int, Cell] = {}
    for clients in CONCURRENCY:
        beside = None
        if signer is not None:
            paired = wrk(
                signer.base + "/token",
                connections=clients,
                seconds=paired_seconds(seconds),
                headers={},
                work_dir=work,
            )
            beside = paired.rps
        before = served.cpu_seconds()
        load = wrk(
            served.base + path, connections=clients, seconds=seconds, headers=headers, work_dir=work
        )
        spent = served.cpu_seconds() - before
        cpu_ms = 1000 * spent / load.requests if load.requests else 0.0
        cells[clients] = Cell(load, cpu_ms, beside)
    return cells


def _warm_up(
    served: Served, path: str, headers: dict[str, str], work: Path, seconds: float
) -> None:
    """Fill caches, open connections and let the interpreter settle; not reported."""
    wrk(served.base + path, connections=4, seconds=seconds, headers=headers, work_dir=work)


def bare_signer(work: Path) -> contextlib.AbstractContextManager[Served]:
    """The bare signer on a daphne of its own, up for the whole run."""
    env = app_env(database_url=sqlite_url(work))
    return daphne_workers("bench.bare_signer:application", env, work, pinned=True)


def _doors(world: dict[str, object]) -> dict[str, tuple[str, dict[str, str]]]:
    conversation = world["conversations"][0]  # type: ignore[index]
    names = world["cookie_names"]
    assert isinstance(names, dict)
    return {
        API: (
            f"/core/conversations/{conversation}/listener-token",
            {"Authorization": f"Bearer {world['api_key']}"},
        ),
        PORTAL: (
            f"/listen/conversations/{conversation}/token",
            {
                "Cookie": f"{session_cookie(world)}; {names['csrf']}={world['csrf_token']}",
                "X-CSRFToken": str(world["csrf_token"]),
            },
        ),
    }


def ours(
    setup: str,
    env: dict[str, str],
    world: dict[str, object],
    work: Path,
    seconds: float,
    warm: float,
    signer: Served,
    *,
    workers: int = 1,
    doors: tuple[str, ...] = (API, PORTAL),
    floor: bool = False,
) -> list[Row]:
    """The token doors (and, with ``floor``, the Django floor first) on ``workers`` daphne."""
    queries = world["queries"]
    assert isinstance(queries, dict)
    counted = {API: int(queries["api"]), PORTAL: int(queries["portal"])}
    paths = _doors(world)
    rows = []
    ready = "/core/openapi.json"
    with daphne_workers(
        "config.asgi:application", env, work, workers=workers, ready_path=ready, pinned=True
    ) as served:
        if floor:
            _warm_up(served, "/bench/floor", {}, work, warm)
            floor_cells = _measure(served, "/bench/floor", {}, work, seconds, signer)
            rows.append(Row(setup, FLOOR, floor_cells, 0))
        for door in doors:
            path, headers = paths[door]
            _warm_up(served, path, headers, work, warm)
            cells = _measure(served, path, headers, work, seconds, signer)
            rows.append(Row(setup, door, cells, counted[door]))
    return rows


def _seeded(env: dict[str, str]) -> dict[str, object]:
    migrate(env)
    return seed(env, "--live", "1", "--query-counts")


def report(signer: Row, rows: list[Row], failures: dict[str, str], seconds: float) -> str:
    lines: list[list[object]] = []
    for row in [signer, *rows]:
        for clients, cell in row.cells.items():
            load = cell.load
            lines.append(
                [
                    row.setup or "none",
                    row.door,
                    clients,
                    num(load.rps, 0),
                    "" if cell.signer_rps is None else num(cell.signer_rps, 0),
                    f"{cell.share(signer):.2f}x",
                    f"{num(load.p50_ms)} / {num(load.p99_ms)}",
                    load.non_2xx + load.socket_errors,
                    num(cell.cpu_ms, 2),
                    "" if row.queries is None else row.queries,
                ]
            )
    headers = [
        "database",
        "door",
        "clients",
        "req/s",
        "signer req/s just before",
        "÷ signer",
        "p50 / p99 ms",
        "errors",
        "server CPU ms/req",
        "queries / req",
    ]
    out = ["### B1 Listener-token endpoint under load", "", table(headers, lines), ""]
    out.append(
        f"Measured: wrk, {seconds:g} s per cell after a warm-up, closed loop over keep-alive "
        "loopback connections; servers with DEBUG off and the rate limits raised "
        "(`bench/settings.py`), each daphne worker pinned to one CPU (`taskset -c`, as "
        "docs/operations/processes.md recommends; worker n on CPU n). Rows: the bare signer "
        "(`bench/bare_signer.py`, an ASGI app that only signs the listener JWT: no Django, no"
        " database) on one daphne; the Django floor (`bench/urls.py`: a bare sync Django view"
        " signing it, through the project's middleware) and our two doors — `POST "
        "/core/conversations/{id}/listener-token` with an API key, the portal's `POST "
        "/listen/conversations/{id}/token` with a session cookie and CSRF token, each writing"
        " its audit row — on one daphne on SQLite (the embedded default) and on PostgreSQL; "
        f"the API door on {WORKERS} daphne workers sharing one listening socket, PostgreSQL "
        "and Redis (the README's production setup). ÷ signer: throughput over the bare "
        f"signer's at the same clients, measured for {paired_seconds(seconds)} s just before "
        "each cell (the machine's speed drifts by tens of percent within minutes; the "
        "signer's own rows are from the start). Errors: non-2xx answers and socket errors. "
        "Server CPU: user + system CPU time of the server processes per answered request (a "
        "steadier figure than req/s when the machine is shared). Queries per request: one "
        "Django test-client request per door. PostgreSQL is a throwaway local cluster with "
        "its default settings (fsync on)."
    )
    out += ["", _targets(signer, rows)]
    out += failure_notes(failures)
    return "\n".join(out)


def _targets(signer: Row, rows: list[Row]) -> str:
    lines = ["Targets (one daphne unless said):"]
    for row in rows:
        if row.door == API and row.setup in TARGET_P99_MS:
            cell = row.cells[TARGET_CLIENTS]
            load, share = cell.load, cell.share(signer)
            p99 = TARGET_P99_MS[row.setup]
            met = share >= TARGET_RATIO and load.p99_ms <= p99
            lines.append(
                f"- {row.setup}, {TARGET_CLIENTS} clients, {row.door}: {share:.2f}x the signer "
                f"(target ≥ {TARGET_RATIO:.2f}x), p99 {load.p99_ms:.0f} ms (target ≤ {p99:.0f} "
                f"ms): {'met' if met else 'NOT met'}"
            )
    for row in rows:
        load = row.cells[ERRORS_CLIENTS].load
        bad = load.non_2xx + load.socket_errors
        lines.append(f"- {row.setup}, {row.door}, {ERRORS_CLIENTS} clients: {bad} errors "
                     f"({'met' if bad == 0 else 'NOT met'}, target 0)")  # fmt: skip
    return "\n".join(lines)


def _attempt(setup: str, failures: dict[str, str], run: Callable[[], list[Row]]) -> list[Row]:
    log(f"B1: {setup}")
    try:
        return run()
    except Exception as exc:
        log(f"{setup} failed: {exc}")
        failures[setup] = str(exc)
        return []


def main() -> int:
    stop_on_signals()
    args = arguments(__doc__)
    seconds, warm = (3.0, 1.0) if args.quick else (10.0, 2.0)
    failures: dict[str, str] = {}
    work = logs_dir("api")
    log(f"logs: {work}")
    with bare_signer(work) as signer_served:
        log("B1: bare signer")
        _warm_up(signer_served, "/token", {}, work, warm)
        signer = Row("", SIGNER, _measure(signer_served, "/token", {}, work, seconds))

        def sqlite() -> list[Row]:
            env = app_env(sqlite_url(work))
            world = _seeded(env)
            return ours("SQLite", env, world, work, seconds, warm, signer_served, floor=True)

        def postgresql() -> list[Row]:
            with postgres(work) as database_url:
                env = app_env(database_url)
                world = _seeded(env)
                rows = ours("PostgreSQL", env, world, work, seconds, warm, signer_served)
                with redis_server() as redis_url:
                    rows += ours(
                        PRODUCTION,
                        app_env(database_url, redis_url),
                        world,
                        work,
                        seconds,
                        warm,
                        signer_served,
                        workers=WORKERS,
                        doors=(API,),
                    )
                return rows

        rows = _attempt("SQLite", failures, sqlite) + _attempt("PostgreSQL", failures, postgresql)
    print(report(signer, rows, failures, seconds))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
