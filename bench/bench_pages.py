"""B5: the dashboard, its htmx rows and the wall with 1,000 live calls vs 10.

    .venv/bin/python bench/bench_pages.py [--quick]

A supervisor with many live calls and one with few share a database; their pages'
server time and queries through Django's test client show whether the pages stay
flat as calls grow. Once on SQLite and once on PostgreSQL: bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.support import (
    app_env,
    failure_notes,
    log,
    logs_dir,
    median,
    migrate,
    num,
    percentile,
    postgres,
    ratio,
    run_python,
    sqlite_url,
    stop_on_signals,
    table,
)

BIG, SMALL = 1000, 10
DASHBOARD, ROWS, ROWS_MAX, WALL = (
    "dashboard `/`",
    "dashboard rows (htmx)",
    "dashboard rows, all 200 (htmx)",
    "wall `/wall/`",
)
PAGES = [
    (DASHBOARD, "/", {}),
    (ROWS, "/", {"HX-Request": "true"}),
    # Show more three times: the most rows a refresh renders (portal/paging.py).
    (ROWS_MAX, "/?rows=200", {"HX-Request": "true"}),
    (WALL, "/wall/", {}),
]
# Issue 21: the dashboard and its rows ≤ 60 ms on the embedded default (SQLite). On
# PostgreSQL (the scale-out path: a round trip per query) they keep the earlier ≤ 100 ms,
# and so does the wall; all 200 rows (Show more three times) are reported, no target.
# Everywhere: the same queries at 1,000 live calls as at 10.
TARGETS_MS: dict[str, dict[str, float | None]] = {
    "SQLite": {DASHBOARD: 60.0, ROWS: 60.0, ROWS_MAX: None, WALL: 100.0},
    "PostgreSQL": {DASHBOARD: 100.0, ROWS: 100.0, ROWS_MAX: None, WALL: 100.0},
}


def worker(requests: int) -> dict[str, Any]:
    """In a process whose environment names the database: seed, then time every page."""
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from bench.seed import make_org, signed_in

    clients: dict[int, Client] = {}
    for live in (BIG, SMALL):
        org = make_org(f"pages-{live}", live)
        clients[live] = signed_in(int(org["user_id"]))[0]

    results: dict[str, Any] = {}
    for name, path, headers in PAGES:
        for live, client in clients.items():

            def get(client: Client = client, path: str = path, headers: Any = headers) -> Any:
                response = client.get(path, headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(f"GET {path}: {response.status_code}")
                return response

            for _ in range(3):
                get()
            with CaptureQueriesContext(connection) as captured:
                rows = get().content.count(b"data-conversation=")
            # Read now: captured_queries is a view of the log the next request resets.
            queries = len(captured.captured_queries)
            times = []
            for _ in range(requests):
                start = time.perf_counter()
                get()
                times.append((time.perf_counter() - start) * 1000)
            results[f"{name}|{live}"] = {
                "median_ms": median(times),
                "p90_ms": percentile(times, 90),
                "queries": queries,
                "rows": rows,
            }
            log(f"  {name}, {live} live: median {median(times):.1f} ms, "
                f"{queries} queries, {rows} rows")  # fmt: skip
    return results


def report(results: dict[str, dict[str, Any]], failures: dict[str, str], requests: int) -> str:
    rows: list[list[object]] = []
    for database, data in results.items():
        for name, _, _ in PAGES:
            big, small = data[f"{name}|{BIG}"], data[f"{name}|{SMALL}"]
            rows.append(
                [
                    database,
                    name,
                    num(big["median_ms"]),
                    num(small["median_ms"]),
                    ratio(big["median_ms"], small["median_ms"]),
                    f"{num(big['p90_ms'])} / {num(small['p90_ms'])}",
                    f"{big['queries']} / {small['queries']}",
                    f"{big['rows']} / {small['rows']}",
                ]
            )
    headers = [
        "database",
        "page",
        f"{BIG:,} live: median ms",
        f"{SMALL} live (baseline): median ms",
        "ratio",
        "p90 ms (1,000 / 10)",
        "queries (1,000 / 10)",
        "rows shown (1,000 / 10)",
    ]
    out = ["### B5 Dashboard and wall with 1,000 live calls", "", table(headers, rows), ""]
    out.append(
        f"Measured: server time through Django's test client in one process (DEBUG off), "
        f"median of {requests} requests after 3 warm-ups, for a supervisor who sees "
        f"{BIG:,} live calls of their team vs one who sees {SMALL} (two organizations in the "
        "same database); queries from `CaptureQueriesContext` around one request (session "
        "and user included); rows shown: `data-conversation=` attributes in the HTML (the "
        "dashboard renders its first 50 calls, up to 200 after Show more, the wall 8). "
        "Ratio: 1,000 ÷ 10 (1.00x is flat)."
    )
    lines = ["", "Targets:"]
    for database, data in results.items():
        for name, _, _ in PAGES:
            big, small = data[f"{name}|{BIG}"], data[f"{name}|{SMALL}"]
            target = TARGETS_MS[database][name]
            flat = big["queries"] == small["queries"]
            if target is None:
                time_target, met = "reported, no target", flat
            else:
                time_target, met = f"target ≤ {target:.0f} ms", flat and big["median_ms"] <= target
            lines.append(
                f"- {database}, {name}: {big['median_ms']:.0f} ms ({time_target}), "
                f"queries {big['queries']} vs {small['queries']} (target: equal): "
                f"{'met' if met else 'NOT met'}"
            )
    out += lines
    out += failure_notes(failures)
    return "\n".join(out)


def main() -> int:
    stop_on_signals()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    requests = 10 if args.quick else 50
    if args.worker:
        print(json.dumps(worker(requests)))
        return 0
    work = logs_dir("pages")
    results: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    quick = ["--quick"] if args.quick else []

    def run(database: str, url: str) -> None:
        log(f"B5: {database}")
        env = app_env(url)
        migrate(env)
        results[database] = json.loads(run_python(env, "bench/bench_pages.py", "--worker", *quick))

    for database in ("SQLite", "PostgreSQL"):
        try:
            if database == "SQLite":
                run(database, sqlite_url(work))
            else:
                with postgres(work) as url:
                    run(database, url)
        except Exception as exc:
            log(f"{database} failed: {exc}")
            failures[database] = str(exc)
    print(report(results, failures, requests))
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    sys.exit(main())
