"""Fixtures shared by every test; the builders they call live in ``tests/support/``."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache

from anyreach_listen.access import key_cache
from anyreach_listen.livekit import room_ownership
from tests.support.world import TEST_LISTEN_SETTINGS, World, build_world


@pytest.fixture(autouse=True)
def _listen_settings(settings: Any) -> None:
    settings.ANYREACH_LISTEN = dict(TEST_LISTEN_SETTINGS)
    # Fast hashing for test users; production keeps Django's default.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Login throttling (django-axes) needs the request, which Client.login() and a bare
    # authenticate() do not pass; tests/portal/test_login_throttle.py turns it on.
    settings.AXES_ENABLED = False


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    # The rate limiter counts in the cache; every test starts from zero, and with no
    # API key kept by another test.
    cache.clear()
    key_cache.clear()


@pytest.fixture(autouse=True)
def _no_livekit_owner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    # A registration asks LiveKit whose room it is; outside the e2e layer no LiveKit
    # runs, so it names no owner (tests/livekit/test_room_ownership.py stubs its answers).
    if request.node.get_closest_marker("e2e") is None:
        monkeypatch.setattr(room_ownership, "livekit_owner", lambda room_name: None)


@pytest.fixture
def world(db: None) -> World:
    """The test world (``tests/support/world.py``) in the test database."""
    return build_world()


@pytest.hookimpl(trylast=True)  # after pytest-django's ordering by database use
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Chromium's tests last: the modules that have any, then within them the tests that
    drive it. Once started, Playwright's sync API keeps an event loop running on the main
    thread, and no async test can run after it.

    pytest-xdist (``--dist loadfile --no-loadscope-reorder``, pyproject.toml) hands each
    worker whole modules (a module's fixtures, a LiveKit server or a simulated call,
    start once) in this order, so on every worker too the modules with Chromium's tests
    come after the rest.

    Within each of the two groups, the modules that start real servers (``e2e``,
    ``packaging``: a minute each, where most take seconds) go first, so that no worker
    starts one while the others run out of work."""
    with_chromium = {item.path for item in items if item.get_closest_marker("browser")}
    slow = {
        item.path
        for item in items
        if any(item.iter_markers("e2e")) or any(item.iter_markers("packaging"))
    }
    items.sort(
        key=lambda item: (
            item.path in with_chromium,
            item.path not in slow,
            bool(item.get_closest_marker("browser")),
        )
    )
