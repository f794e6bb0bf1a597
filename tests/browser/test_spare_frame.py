"""The loader's spare frame (js/src/sdk/spare.ts), in real Chromium against the
fake adapter: injected once the page has loaded, adopted by the first listen()
(whether or not its "ready" came first), never made with ``data-prewarm="off"``,
removed by end() like any session's frame, and silently dropped when the host
refuses to be framed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, Route

from tests.browser.conftest import SdkHost, listen_frame, make_token, sdk_host_server
from tests.browser.fixtures import Observed
from tests.browser.pages import EmbeddingSite, sdk_page
from tests.browser.test_contract import connect, create, settled, wait_connects
from tests.support.processes import wait_until

pytestmark = pytest.mark.browser

FRAMES = "document.querySelectorAll('iframe[src$=\"/public/listen\"]').length"
# Resolves once the page has loaded and the SDK's own idle callback (registered at
# load, with a shorter deadline) has had its turn: a condition, not a sleep.
AFTER_SPARE_TURN = """() => new Promise((resolve) => {
  const idle = () => requestIdleCallback(() => setTimeout(resolve, 0), { timeout: 2000 });
  if (document.readyState === "complete") idle(); else addEventListener("load", idle);
})"""


def open_page(page: Page, site: EmbeddingSite, sdk_host: SdkHost, attrs: str = "") -> None:
    page.goto(site.add("/spare.html", sdk_page(sdk_host.sdk_url, attrs=attrs)))
    page.wait_for_function("() => window.AnyReach && window.listenTest")


def frames(page: Page) -> int:
    return int(page.evaluate(FRAMES))


def hold_frame_documents(page: Page) -> list[Route]:
    """Holds every request for the frame's document until the test continues it."""
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.context.route("**/public/listen", hold)
    return held


def test_a_listen_after_load_adopts_the_spare_whose_ready_came_first(
    page: Page, site: EmbeddingSite, sdk_host: SdkHost, observed: Observed
) -> None:
    open_page(page, site, sdk_host)
    # The spare is there before any listen(), and has done its handshake.
    page.wait_for_function(f"() => {FRAMES} === 1")
    listen_frame(page).wait_for_function(
        "() => window.__anyreachFake.ignored.includes('init')", polling=50
    )
    page.evaluate("() => { window.spare = document.querySelector('iframe'); }")
    create(page, sdk_host, "auto")
    assert frames(page) == 1
    assert page.evaluate("() => document.querySelector('iframe') === window.spare")
    connect(page)
    wait_connects(page, 0, ["resolved"])
    assert page.evaluate("() => listenTest.log(0, 'stateChange')") == ["connecting", "connected"]
    page.evaluate("() => listenTest.sessions[0].session.end()")
    assert frames(page) == 0
    # No new spare after the one listen() adopted (nor after it ended).
    page.evaluate(AFTER_SPARE_TURN)
    assert frames(page) == 0
    assert observed.page_errors == [] and observed.console_errors == []


def test_a_spare_still_loading_is_adopted_and_its_late_ready_answered(
    page: Page, site: EmbeddingSite, sdk_host: SdkHost
) -> None:
    held = hold_frame_documents(page)
    open_page(page, site, sdk_host)
    # The spare's document request is on hold: its "ready" cannot have come yet.
    wait_until(lambda: page.evaluate(FRAMES) == 1 and held, timeout=10, what="the spare")
    create(page, sdk_host, "auto")
    connect(page)
    assert frames(page) == 1  # listen() made no frame of its own
    assert page.evaluate("() => listenTest.sessions[0].connects") == ["pending"]
    held[0].continue_()
    wait_connects(page, 0, ["resolved"])
    assert len(held) == 1 and frames(page) == 1


def test_data_prewarm_off_makes_no_spare(
    page: Page, site: EmbeddingSite, sdk_host: SdkHost, observed: Observed
) -> None:
    open_page(page, site, sdk_host, attrs='data-prewarm="off"')
    page.evaluate(AFTER_SPARE_TURN)
    assert frames(page) == 0
    assert sdk_host.frame_url not in observed.requests
    create(page, sdk_host, "auto")  # listen() injects its frame, as without a spare
    assert frames(page) == 1
    connect(page)
    wait_connects(page, 0, ["resolved"])


def test_a_second_session_gets_a_frame_of_its_own(
    page: Page, site: EmbeddingSite, sdk_host: SdkHost
) -> None:
    open_page(page, site, sdk_host)
    page.wait_for_function(f"() => {FRAMES} === 1")
    create(page, sdk_host, "auto")
    create(page, sdk_host, "auto")
    assert frames(page) == 2
    connect(page, 1)
    wait_connects(page, 1, ["resolved"])
    page.evaluate("() => listenTest.sessions[0].session.end()")
    assert frames(page) == 1


@pytest.fixture(scope="module")
def refusing_host(
    built_js: None, site: EmbeddingSite, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SdkHost]:
    """An SDK host whose EMBED_ORIGINS does not allow the embedding site."""
    with sdk_host_server(
        tmp_path_factory.mktemp("refusing"), embed_origins=["https://crm.example.com"]
    ) as host:
        yield host


def test_a_spare_the_host_refuses_to_frame_goes_away_silently(
    page: Page, site: EmbeddingSite, refusing_host: SdkHost, observed: Observed
) -> None:
    open_page(page, site, refusing_host)
    page.wait_for_function(f"() => {FRAMES} === 1")
    # frame-ancestors blocks it; after the SDK's grace it is removed, reporting nothing.
    page.wait_for_function(f"() => {FRAMES} === 0", timeout=10_000)
    assert observed.page_errors == []
    assert [e for e in observed.console_errors if "frame-ancestors" not in e] == []
    # listen() then fails exactly as it does without a spare.
    create(page, refusing_host, "auto", token=make_token())
    assert frames(page) == 1
    connect(page)
    [outcome] = settled(page)
    assert "did not start" in outcome and "EMBED_ORIGINS" in outcome
    page.evaluate("() => listenTest.sessions[0].session.end()")
    assert frames(page) == 0
