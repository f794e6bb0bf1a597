"""The token endpoint under concurrent callers, on real daphne, on either database.

Sustained concurrent mints must all succeed, so the embedded SQLite takes concurrent
writers and PostgreSQL does not run out of connections; a burst over a per-credential
rate limit must answer only successes and that limit's refusals, each success audited
exactly once under the credential that minted it. The servers run
``tests.support.load_settings`` (the project's settings over loopback HTTP).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from anyreach_listen.livekit.service import run_sync
from tests.support.datastores import postgres_server
from tests.support.load import seeded_world
from tests.support.processes import daphne_server, free_port, run_manage

# Sustained enough that a connection per daphne thread exhausts PostgreSQL (without
# Django's pool) and that SQLite's lock upgrades collide (without WAL, IMMEDIATE
# transactions and a busy timeout).
CONCURRENT = 64
TOTAL = 512
KEYS = 16  # 32 mints each

BURST = 200  # mints in flight at once
BURST_KEYS = 20  # 10 mints each
LIMIT = 8  # per credential and window: 8 answered 200, 2 answered 429 per key
WINDOW = 3600  # seconds: a fixed window the burst stays inside (checked)


@contextlib.contextmanager
def sqlite_file(tmp_path: Path) -> Iterator[str]:
    yield f"sqlite:///{tmp_path / 'db.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with sqlite_file(tmp_path) if request.param == "sqlite" else postgres_server() as url:
        yield url


def _env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "tests.support.load_settings",
        "DATABASE_URL": database_url,
        "DEBUG": "0",  # as deployed: no query log, no debug pages
        "SECRET_KEY": "concurrency-test-" + "k" * 40,
        "ALLOWED_HOSTS": "127.0.0.1",
        "CREDENTIAL_HASH_KEY": "h" * 40,
        "LIVEKIT_URL": "ws://127.0.0.1:7880",
        "LIVEKIT_API_KEY": "devkey",
        "LIVEKIT_API_SECRET": "a-concurrency-test-secret-of-32-chars",
        **extra,
    }


def _audit(env: dict[str, str], conversation_id: str) -> list[tuple[str, str]]:
    """(listener identity, API key name) of every listen session of the call."""
    code = f"from tests.support.load import print_audit; print_audit({conversation_id!r})"
    rows = json.loads(run_manage(env, "shell", "-c", code).strip().splitlines()[-1])
    return [(identity, key) for identity, key in rows]


async def _mint_all(
    base: str, conversation_id: str, keys: list[str], total: int, concurrent: int
) -> list[httpx.Response]:
    # The connection limit keeps exactly ``concurrent`` requests in flight.
    limits = httpx.Limits(max_connections=concurrent)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        return await asyncio.gather(
            *(
                client.post(
                    f"/core/conversations/{conversation_id}/listener-token",
                    headers={"Authorization": f"Bearer {keys[i % len(keys)]}"},
                )
                for i in range(total)
            )
        )


def test_sustained_64_concurrent_mints_all_succeed_and_are_audited_once(database_url: str) -> None:
    env = _env(database_url)
    world = seeded_world(env, KEYS)
    conversation_id = world["conversation_id"]
    with daphne_server(free_port(), env) as base:
        # run_sync: a session-wide browser fixture may already run a loop in this thread.
        responses = run_sync(_mint_all(base, conversation_id, world["api_keys"], TOTAL, CONCURRENT))
    statuses = [r.status_code for r in responses]
    failures = [f"{r.status_code} {r.text[:120]}" for r in responses if r.status_code != 200]
    assert statuses == [200] * TOTAL, failures[:5]
    assert len({r.json()["token"] for r in responses}) == TOTAL
    assert len(_audit(env, conversation_id)) == TOTAL


def _identity(response: httpx.Response) -> str:
    token = response.json()["token"]
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


def test_200_concurrent_mints_from_20_credentials_are_200_or_429_and_each_200_audited_once(
    database_url: str,
) -> None:
    env = _env(database_url, LOAD_RATE_LIMIT=str(LIMIT), LOAD_RATE_WINDOW=str(WINDOW))
    world = seeded_world(env, BURST_KEYS)
    conversation_id, keys = world["conversation_id"], world["api_keys"]
    with daphne_server(free_port(), env) as base:
        window = int(time.time() // WINDOW)
        responses = run_sync(_mint_all(base, conversation_id, keys, BURST, BURST))
        same_window = window == int(time.time() // WINDOW)

    by_status = collections.Counter(r.status_code for r in responses)
    unexpected = [f"{r.status_code} {r.text[:120]}" for r in responses if r.status_code > 200]
    unexpected = [line for line in unexpected if not line.startswith("429 ")]
    assert not unexpected, unexpected[:5]
    for limited in (r for r in responses if r.status_code == 429):
        assert limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1

    # Every 200 is one audit row, under the key that minted it; no 429 left a row.
    granted: collections.Counter[str] = collections.Counter()
    identities = set()
    for i, response in enumerate(responses):
        if response.status_code == 200:
            granted[keys[i % len(keys)]] += 1
            identities.add(_identity(response))
    assert len(identities) == by_status[200]
    audit = _audit(env, conversation_id)
    assert len(audit) == by_status[200]
    assert {identity for identity, _ in audit} == identities
    name_of = dict(zip(keys, _key_names(world), strict=True))
    per_key = collections.Counter(name for _, name in audit)
    assert per_key == {name_of[secret]: count for secret, count in granted.items()}
    if same_window:  # a window boundary mid-burst would give some keys a fresh limit
        assert by_status == {200: LIMIT * BURST_KEYS, 429: BURST - LIMIT * BURST_KEYS}
        assert set(granted.values()) == {LIMIT}


def _key_names(world: dict[str, Any]) -> list[str]:
    slug = world["room_name"].removesuffix("-room")
    return [f"{slug}-{i}" for i in range(len(world["api_keys"]))]
