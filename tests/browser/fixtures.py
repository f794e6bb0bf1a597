"""Reusable Playwright fixtures: one headless Debian Chromium per test process.

Playwright's sync API allows one running instance per thread, so the browser is
a process-wide singleton (``shared_browser()``): any number of conftests can
expose a ``browser`` fixture built on it without starting a second Playwright.
Other test packages can import these fixtures into their conftest
(``from tests.browser.fixtures import browser, context, observed, page``) or the
root conftest can load the module with ``pytest_plugins``.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
    "--disable-quic",
]
TIMEOUT_MS = 10_000
# A microphone without asking: Chromium's fake device (a beep each second), allowed.
FAKE_MICROPHONE_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]

_playwright: Playwright | None = None
_browser: Browser | None = None


def shared_browser() -> Browser:
    """The process's Chromium, launched on first use."""
    global _playwright, _browser
    if _browser is None or not _browser.is_connected():
        if _playwright is None:
            _playwright = sync_playwright().start()
            atexit.register(stop_shared_browser)
        _browser = _playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
    return _browser


def stop_shared_browser() -> None:
    """Close the browser and stop Playwright (idempotent)."""
    global _playwright, _browser
    if _browser is not None:
        _browser.close()
        _browser = None
    if _playwright is not None:
        _playwright.stop()
        _playwright = None


@pytest.fixture(scope="session")
def browser(django_db_setup: None) -> Iterator[Browser]:
    # The test database first, whether or not this worker's first module uses it: once
    # Chromium runs, Playwright's sync API keeps an event loop on this thread, and Django
    # refuses to create the database under it (SynchronousOnlyOperation).
    yield shared_browser()
    stop_shared_browser()


@dataclass
class Observed:
    """What the browser did during one test."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def observed() -> Observed:
    return Observed()


@pytest.fixture
def context(browser: Browser, observed: Observed) -> Iterator[BrowserContext]:
    ctx = browser.new_context()
    ctx.set_default_timeout(TIMEOUT_MS)
    ctx.on("request", lambda request: observed.requests.append(request.url))
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext, observed: Observed) -> Page:
    pg = context.new_page()

    def on_console(message: Any) -> None:
        observed.console.append(message.text)
        if message.type == "error":
            observed.console_errors.append(message.text)

    pg.on("console", on_console)
    pg.on("pageerror", lambda error: observed.page_errors.append(str(error)))
    return pg
