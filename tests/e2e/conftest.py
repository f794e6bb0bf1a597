"""The real stack for end-to-end tests: livekit-server --dev, daphne, a database file.

One stack per session: a migrated, seeded SQLite file (subprocess servers
cannot see pytest-django's test database), a LiveKit server on free loopback
ports posting webhooks to daphne, and daphne serving the project. The builders
(``Stack``, ``simulated_call``) live in ``tests/support/stack.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser.fixtures import browser, context, observed, page  # noqa: F401  (shared fixtures)
from tests.support.stack import Stack, running_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("e2e")) as running:
        yield running
