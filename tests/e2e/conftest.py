"""The real stack for end-to-end tests: livekit-server --dev, daphne, a database file.

One stack per session: a migrated, seeded SQLite file (subprocess servers
cannot see pytest-django's test database), a LiveKit server on free loopback
ports posting webhooks to daphne, and daphne serving the project. The builders
(``Stack``, ``simulated_call``) live in ``tests/support/stack.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.browser.fixtures import browser, context, observed, page  # noqa: F401  (shared fixtures)
from tests.support.livekit import livekit_server
from tests.support.processes import daphne_server, free_port
from tests.support.stack import Stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("e2e")
    db_path = tmp / "db.sqlite3"
    daphne_port = free_port()
    webhook = f"http://127.0.0.1:{daphne_port}/livekit/webhook"
    with livekit_server(tmp, [webhook]) as lk:
        env = {
            "DATABASE_URL": f"sqlite:///{db_path}",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PYTHONUNBUFFERED": "1",
            **lk.env(),
        }
        partial = Stack(tmp, env, "", lk, {}, db_path)
        partial.manage("migrate", "-v0")
        partial.seed = json.loads(partial.manage("seed_demo", "--json"))
        with daphne_server(daphne_port, env, log_path=tmp / "daphne.log") as base:
            partial.base_url = base
            # simulate_call registers its calls through the REST API.
            env["ANYREACH_API_URL"] = base
            env["ANYREACH_API_KEY"] = partial.seed["api_keys"]["manage"]
            yield partial
