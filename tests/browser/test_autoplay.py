"""Autoplay wiring: the frame allows autoplay, startAudio() from a click on the parent
page reaches the frame's adapter, and audioPlaybackChanged follows its playback state.

Chromium under automation cannot show the policy itself (it either plays without a
gesture or, with the old user-gesture policy, ignores delegation and never plays), so
these tests prove the wiring that lets real Chrome accept the parent's user activation.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import SdkHost, fake, listen_frame
from tests.browser.pages import EmbeddingSite, sdk_page
from tests.browser.test_contract import create, log, wait_connects

pytestmark = pytest.mark.browser

PLAY_BUTTON = (
    "<button id='play'>Listen</button><script>"
    "document.getElementById('play').addEventListener('click', () => {"
    " window.startAudioResult = 'pending';"
    " listenTest.sessions[0].session.startAudio().then("
    "  () => { window.startAudioResult = 'resolved'; },"
    "  (e) => { window.startAudioResult = 'rejected: ' + e.message; }); });"
    "</script>"
)


def connected(page: Page, site: EmbeddingSite, sdk_host: SdkHost):
    page.goto(site.add("/autoplay.html", sdk_page(sdk_host.sdk_url, PLAY_BUTTON)))
    page.wait_for_function("() => window.AnyReach && window.listenTest")
    create(page, sdk_host, "auto")
    page.evaluate("() => { listenTest.connect(0); }")
    wait_connects(page, 0, ["resolved"])
    return listen_frame(page)


def test_iframe_allows_autoplay(page: Page, site: EmbeddingSite, sdk_host: SdkHost) -> None:
    connected(page, site, sdk_host)
    assert page.locator("iframe").get_attribute("allow") == "autoplay"


def test_blocked_playback_then_click_start_audio(
    page: Page, site: EmbeddingSite, sdk_host: SdkHost
) -> None:
    frame = connected(page, site, sdk_host)
    fake(frame, "(f) => f.playbackBlocked(true)")
    page.wait_for_function("() => listenTest.log(0, 'audioPlaybackChanged').length === 1")
    assert log(page, 0, "audioPlaybackChanged") == [{"playing": False}]
    assert "startAudio" not in fake(frame, "(f) => f.calls")
    page.click("#play")
    page.wait_for_function("() => window.startAudioResult === 'resolved'")
    assert fake(frame, "(f) => f.calls").count("startAudio") == 1
    page.wait_for_function("() => listenTest.log(0, 'audioPlaybackChanged').length === 2")
    assert log(page, 0, "audioPlaybackChanged") == [{"playing": False}, {"playing": True}]


def test_start_audio_failure_is_reported(
    page: Page, site: EmbeddingSite, sdk_host: SdkHost
) -> None:
    frame = connected(page, site, sdk_host)
    fake(frame, "(f) => { f.failStartAudio = 'NotAllowedError: play() failed'; }")
    page.click("#play")
    page.wait_for_function("() => window.startAudioResult !== 'pending'")
    result = page.evaluate("() => window.startAudioResult")
    assert result.startswith("rejected: ") and "from a click or key handler" in result
    [error] = log(page, 0, "error")
    assert "NotAllowedError" in error["message"]
    assert page.evaluate("() => listenTest.sessions[0].session.getState()") == "connected"
