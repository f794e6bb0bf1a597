"""The token endpoint under 64 concurrent callers, on real daphne: no error on either database.

512 mints, 64 at a time: sustained enough that a connection per daphne thread
exhausts PostgreSQL, and that SQLite's lock upgrades collide.

The embedded SQLite must take concurrent writers (WAL, IMMEDIATE transactions,
a busy timeout) and PostgreSQL must not run out of connections (Django's pool)
where a connection per daphne thread used to end in "too many clients".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from anyreach_listen.livekit_service import run_sync
from tests.support.datastores import postgres_server
from tests.support.processes import daphne_server, free_port, run_manage

CONCURRENT = 64
TOTAL = 512
KEYS = 16  # 32 mints each stay under the default per-credential limit of 60 a minute


@contextlib.contextmanager
def sqlite_file(tmp_path: Path) -> Iterator[str]:
    yield f"sqlite:///{tmp_path / 'db.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with sqlite_file(tmp_path) if request.param == "sqlite" else postgres_server() as url:
        yield url


async def _mint_all(base: str, conversation_id: str, keys: list[str]) -> list[httpx.Response]:
    # The connection limit keeps exactly CONCURRENT requests in flight.
    limits = httpx.Limits(max_connections=CONCURRENT)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        return await asyncio.gather(
            *(
                client.post(
                    f"/core/conversations/{conversation_id}/listener-token",
                    headers={"Authorization": f"Bearer {keys[i % len(keys)]}"},
                )
                for i in range(TOTAL)
            )
        )


def test_sustained_64_concurrent_mints_all_succeed_and_are_audited_once(database_url: str) -> None:
    env = {
        "DATABASE_URL": database_url,
        "DEBUG": "0",  # as deployed: no query log, no debug pages
        "SECRET_KEY": "concurrency-test-" + "k" * 40,
        "ALLOWED_HOSTS": "127.0.0.1",
        "CREDENTIAL_HASH_KEY": "h" * 40,
        "LIVEKIT_URL": "ws://127.0.0.1:7880",
        "LIVEKIT_API_KEY": "devkey",
        "LIVEKIT_API_SECRET": "a-concurrency-test-secret-of-32-chars",
    }
    run_manage(env, "migrate", "-v0")
    seed = json.loads(run_manage(env, "seed_demo", "--json"))
    keys = [
        run_manage(
            env, "create_api_key", "demo", "--name", f"k{i}", "--scope", "conversations:manage"
        ).strip()
        for i in range(KEYS)
    ]
    conversation_id = seed["conversations"]["active"]
    with daphne_server(free_port(), env) as base:
        # run_sync: a session-wide browser fixture may already run a loop in this thread.
        responses = run_sync(_mint_all(base, conversation_id, keys))
    statuses = [r.status_code for r in responses]
    failures = [f"{r.status_code} {r.text[:120]}" for r in responses if r.status_code != 200]
    assert statuses == [200] * TOTAL, failures[:5]
    assert len({r.json()["token"] for r in responses}) == TOTAL
    audited = run_manage(
        env,
        "shell",
        "-c",
        "from anyreach_listen.models import ListenSession as L; "
        f"print(L.objects.filter(conversation_id='{conversation_id}', via='api').count())",
    )
    assert audited.strip().splitlines()[-1] == str(TOTAL)
