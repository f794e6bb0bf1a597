"""The production frame (real livekit-client adapter) runs under its strict CSP.

No LiveKit server listens at the host's LIVEKIT_URL here, so connect() must fail
with an actionable message, through the whole real path, with no CSP violation.
The real-LiveKit end-to-end tests live in tests/e2e.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import Observed, SdkHost, make_token
from tests.browser.pages import EmbeddingSite, sdk_page
from tests.browser.test_contract import create, log, settled

pytestmark = pytest.mark.browser


def test_production_frame_reports_an_unreachable_livekit(
    page: Page, site: EmbeddingSite, sdk_host: SdkHost, observed: Observed
) -> None:
    page.goto(site.add("/real.html", sdk_page(f"{sdk_host.base}/real/public/listen-sdk")))
    page.wait_for_function("() => window.AnyReach && window.listenTest")
    create(page, sdk_host, url=sdk_host.livekit_url, token=make_token())
    page.evaluate("() => { listenTest.connect(0); }")
    page.wait_for_function(
        "() => !listenTest.sessions[0].connects.includes('pending')", timeout=20_000
    )
    [outcome] = settled(page)
    assert outcome.startswith("rejected: AnyReach:")
    assert "timed out" not in outcome
    [error] = log(page, 0, "error")
    assert f"cannot reach the LiveKit server at {sdk_host.livekit_url}" in error["message"]
    frame_urls = [f.url for f in page.frames]
    assert f"{sdk_host.base}/real/public/listen" in frame_urls
    assert not [m for m in observed.console if "Content Security Policy" in m]
    # Chromium's words for a failed load; a bare "404" also matches a token in a URL.
    assert not [m for m in observed.console_errors if "status of 404" in m]
    assert observed.page_errors == []
    # livekit-client's own logging is turned down to warnings in the frame.
    assert not [m for m in observed.console if m.startswith("connection state changed")]
