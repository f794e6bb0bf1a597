"""B1: the listener-token endpoint under load, against a bare signer on the same daphne.

    .venv/bin/python bench/bench_api.py [--quick]

wrk drives both token doors (API key, portal session) under daphne on SQLite and on
PostgreSQL, and ``bench/bare_signer.py`` under the same daphne, so the ratio is what
our checks, lookup and audit row cost per token. How to read it: bench/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.support import (
    Load,
    app_env,
    arguments,
    daphne,
    log,
    logs_dir,
    migrate,
    num,
    postgres,
    ratio,
    seed,
    sqlite_url,
    stop_on_signals,
    table,
    wrk,
)

CONCURRENCY = (1, 16, 64)
DOORS = ("API key", "portal session")
TARGET_RATIO = 0.10
TARGET_P99_MS = 250.0


def _warm_up(url: str, headers: dict[str, str], work: Path, seconds: float) -> None:
    """Fill caches, open connections and let the JIT-less interpreter settle; not reported."""
    wrk(url, connections=4, seconds=seconds, headers=headers, work_dir=work)


def bare_signer(work: Path, seconds: float, warm: float) -> dict[int, Load]:
    env = app_env(database_url=sqlite_url(work))
    with daphne("bench.bare_signer:application", env, work) as base:
        url = f"{base}/token"
        _warm_up(url, {}, work, warm)
        return {
            c: wrk(url, connections=c, seconds=seconds, headers={}, work_dir=work)
            for c in CONCURRENCY
        }


def ours(
    database_url: str, work: Path, seconds: float, warm: float
) -> tuple[dict[tuple[str, int], Load], dict[str, int]]:
    env = app_env(database_url)
    migrate(env)
    world = seed(env, "--live", "1", "--query-counts")
    conversation = world["conversations"][0]  # type: ignore[index]
    names = world["cookie_names"]
    assert isinstance(names, dict)
    doors = {
        "API key": (
            f"/core/conversations/{conversation}/listener-token",
            {"Authorization": f"Bearer {world['api_key']}"},
        ),
        "portal session": (
            f"/listen/conversations/{conversation}/token",
            {
                "Cookie": f"{names['session']}={world['session_cookie']}; "
                f"{names['csrf']}={world['csrf_token']}",
                "X-CSRFToken": str(world["csrf_token"]),
            },
        ),
    }
    loads: dict[tuple[str, int], Load] = {}
    with daphne("config.asgi:application", env, work, ready_path="/core/openapi.json") as base:
        for path, headers in doors.values():
            _warm_up(base + path, headers, work, warm)
        for c in CONCURRENCY:
            for door, (path, headers) in doors.items():
                loads[door, c] = wrk(
                    base + path, connections=c, seconds=seconds, headers=headers, work_dir=work
                )
    queries = world["queries"]
    assert isinstance(queries, dict)
    return loads, {"API key": int(queries["api"]), "portal session": int(queries["portal"])}


def report(
    bare: dict[int, Load],
    results: dict[str, tuple[dict[tuple[str, int], Load], dict[str, int]]],
    failures: dict[str, str],
    seconds: float,
) -> str:
    rows: list[list[object]] = []
    for database, (loads, queries) in results.items():
        for c in CONCURRENCY:
            for door in DOORS:
                load, base = loads[door, c], bare[c]
                rows.append(
                    [
                        database,
                        door,
                        c,
                        num(load.rps, 0),
                        num(base.rps, 0),
                        ratio(load.rps, base.rps),
                        f"{num(load.p50_ms)} / {num(load.p99_ms)}",
                        f"{num(base.p50_ms)} / {num(base.p99_ms)}",
                        load.non_2xx,
                        load.socket_errors,
                        queries[door],
                    ]
                )
    headers = [
        "database",
        "door",
        "clients",
        "ours req/s",
        "bare req/s",
        "ratio",
        "ours p50 / p99 ms",
        "bare p50 / p99 ms",
        "non-2xx",
        "socket errors",
        "queries / req",
    ]
    out = ["### B1 Listener-token endpoint under load", "", table(headers, rows), ""]
    out.append(
        f"Measured: wrk, {seconds:g} s per cell after a warm-up, closed loop over keep-alive "
        "loopback connections, against one daphne process (DEBUG off, rate limit raised). "
        "Ours: `POST /core/conversations/{id}/listener-token` with an API key (door "
        "'API key') and the portal's `POST /listen/conversations/{id}/token` with a session "
        "cookie and CSRF token ('portal session'), each writing its audit row. Bare: "
        "`bench/bare_signer.py`, an ASGI app that only signs the same listener JWT "
        "(no Django, no database); its "
        f"non-2xx: {sum(b.non_2xx + b.socket_errors for b in bare.values())}. Queries per "
        "request: one Django test-client request per door after a warm-up. PostgreSQL is a "
        "throwaway local cluster with its default settings (fsync on). Ratio: ours ÷ bare "
        "throughput (higher is better)."
    )
    out += ["", _targets(bare, results)]
    for database, error in failures.items():
        out += ["", f"**{database} failed**: `{error.splitlines()[0] if error else '?'}` "
                "(details on stderr)."]  # fmt: skip
    return "\n".join(out)


def _targets(
    bare: dict[int, Load], results: dict[str, tuple[dict[tuple[str, int], Load], dict[str, int]]]
) -> str:
    lines = ["Targets:"]
    for database, (loads, _) in results.items():
        bad = sum(load.non_2xx + load.socket_errors for load in loads.values())
        lines.append(f"- {database}: non-2xx and socket errors over all cells: {bad} "
                     f"({'met' if bad == 0 else 'NOT met'}, target 0)")  # fmt: skip
    if "SQLite" in results:
        loads = results["SQLite"][0]
        for door in DOORS:
            load = loads[door, 16]
            share = load.rps / bare[16].rps if bare[16].rps else 0.0
            met = share >= TARGET_RATIO and load.p99_ms <= TARGET_P99_MS
            lines.append(
                f"- SQLite, 16 clients, {door}: {share:.2f}x bare (target ≥ {TARGET_RATIO:.2f}x), "
                f"p99 {load.p99_ms:.0f} ms (target ≤ {TARGET_P99_MS:.0f} ms): "
                f"{'met' if met else 'NOT met'}"
            )
    return "\n".join(lines)


def main() -> int:
    stop_on_signals()
    args = arguments(__doc__)
    seconds, warm = (3.0, 1.0) if args.quick else (10.0, 2.0)
    results: dict[str, tuple[dict[tuple[str, int], Load], dict[str, int]]] = {}
    failures: dict[str, str] = {}
    work = logs_dir("api")
    log(f"logs: {work}")
    log("B1: bare signer")
    bare = bare_signer(work, seconds, warm)
    log("B1: SQLite")
    try:
        results["SQLite"] = ours(sqlite_url(work), work, seconds, warm)
    except Exception as exc:
        log(f"SQLite failed: {exc}")
        failures["SQLite"] = str(exc)
    log("B1: PostgreSQL")
    try:
        with postgres(work) as database_url:
            results["PostgreSQL"] = ours(database_url, work, seconds, warm)
    except Exception as exc:
        log(f"PostgreSQL failed: {exc}")
        failures["PostgreSQL"] = str(exc)
    print(report(bare, results, failures, seconds))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
