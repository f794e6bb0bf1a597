"""Browser-test fixtures: built bundles, one SDK host (daphne), one embedding site
on another origin, one shared headless Chromium, and a fresh context per test.

The SDK host runs ``tests.browser.settings``, whose URLconf serves the frame
with the fake LiveKit adapter (js/dist-test/); see ``tests/browser/urls.py``.

Generic browser fixtures (browser, context, page, observed) live in
``tests/browser/fixtures.py`` so other test packages can share one Chromium.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from playwright.sync_api import Frame, Page

from tests.browser.fixtures import TIMEOUT_MS, Observed, browser, context, observed, page
from tests.browser.pages import EmbeddingSite
from tests.support.processes import ROOT, daphne_server, free_port, wait_until


def build_js() -> None:
    """Run the (idempotent) JS build so the tests always see the current sources."""
    subprocess.run(["make", "-s", "-C", str(ROOT / "js"), "build"], check=True)


@pytest.fixture(scope="session")
def built_js() -> None:
    build_js()


@dataclass(frozen=True)
class SdkHost:
    base: str
    livekit_url: str

    @property
    def sdk_url(self) -> str:
        return f"{self.base}/public/listen-sdk"

    @property
    def frame_url(self) -> str:
        return f"{self.base}/public/listen"

    def fake_url(self, mode: str = "manual", **params: str) -> str:
        """A LiveKit url (this host's LIVEKIT_URL) telling the fake adapter how to behave."""
        query = "&".join(f"{k}={v}" for k, v in {"fake": mode, **params}.items())
        return f"{self.livekit_url}/?{query}"


@contextlib.contextmanager
def sdk_host_server(tmp: Path, *, embed_origins: list[str] | None = None) -> Iterator[SdkHost]:
    """A real daphne serving the app with the test URLconf, on a migrated SQLite file."""
    db = tmp / "db.sqlite3"
    livekit_url = f"ws://127.0.0.1:{free_port()}"  # nothing listens: the fake never connects
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.browser.settings",
        "DATABASE_URL": f"sqlite:///{db}",
        "LIVEKIT_URL": livekit_url,
        "LISTEN_TEST_EMBED_ORIGINS": json.dumps(embed_origins or ["*"]),
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
    )
    with daphne_server(free_port(), env, log_path=tmp / "daphne.log") as base:
        yield SdkHost(base=base, livekit_url=livekit_url)


@pytest.fixture(scope="session")
def sdk_host(built_js: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SdkHost]:
    with sdk_host_server(tmp_path_factory.mktemp("sdk-host")) as host:
        yield host


@pytest.fixture(scope="session")
def site() -> Iterator[EmbeddingSite]:
    with EmbeddingSite().running() as running:
        yield running


def listen_frame(page: Page, index: int = 0) -> Frame:
    """The index-th listen frame of the page, once its fake adapter is installed.

    Looked up again on every poll: the iframe's Frame can be swapped while it
    navigates from about:blank to the cross-origin frame page (site isolation).
    """

    def find() -> Frame | None:
        handle = page.locator('iframe[src$="/public/listen"]').nth(index).element_handle()
        frame = handle.content_frame()
        if frame is None or not frame.url.endswith("/public/listen"):
            return None
        ready = frame.evaluate("() => window.__anyreachFake !== undefined")
        return frame if ready else None

    return wait_until(find, timeout=TIMEOUT_MS / 1000, what="the listen frame")


def fake(frame: Frame, script: str, arg: Any = None) -> Any:
    """Evaluate ``script`` (a JS function of the fake control object and ``arg``) in the frame."""
    return frame.evaluate(
        f"([arg]) => {{ const fake = window.__anyreachFake; return ({script})(fake, arg); }}",
        [arg],
    )


def make_token(*, embed_origins: list[str] | None = None, identity: str = "listener-test") -> str:
    """A LiveKit-shaped listener JWT (the fake never verifies it; the frame reads metadata)."""
    now = dt.datetime.now(tz=dt.UTC)
    claims = {
        "sub": identity,
        "iss": "devkey",
        "nbf": int(now.timestamp()),
        "exp": int((now + dt.timedelta(minutes=5)).timestamp()),
        "video": {"roomJoin": True, "room": "room-1", "canSubscribe": True, "hidden": True},
        "metadata": json.dumps({"listener": True, "embed_origins": embed_origins or []}),
    }
    return jwt.encode(claims, "test-secret-that-is-at-least-32-characters", algorithm="HS256")


__all__ = ["Observed", "browser", "context", "observed", "page"]
