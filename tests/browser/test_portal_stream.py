"""The portal's scripts and the event stream's state (``events.js``): a script that
starts listening after the stream opened still learns that it is open, from the state
events.js keeps on the page (the event itself is gone by then).

The portal runs in this process (``portal_pages.InProcessPortal``) and the test plays
the events websocket; the script under test is held back until the stream is open,
then added to the page, as a late download would run.
"""

from __future__ import annotations

import pytest
from django.utils import timezone
from playwright.sync_api import Page, Route, expect

from anyreach_listen import transcripts
from anyreach_listen.models import Conversation, ListenSession
from anyreach_listen.transcripts import SegmentIn
from tests.browser.fixtures import Observed
from tests.browser.portal_pages import ORIGIN, InProcessPortal
from tests.browser.test_portal_assist import (  # the in-process portal and its live call
    call,  # noqa: F401  (fixture)
    in_process,  # noqa: F401  (autouse fixture)
    portal_as,
)
from tests.support.world import World

pytestmark = pytest.mark.browser


def held_back(page: Page, portal: InProcessPortal, path: str, script: str) -> None:
    """Opens ``path`` with ``script`` (a static path) refused, waits until the page's
    stream is open, then adds the script to the page: it runs after the stream opened."""
    url = f"{ORIGIN}/static/{script}"

    def refuse(route: Route) -> None:
        route.abort()

    page.route(url, refuse)  # routes added later win over the portal's own
    portal.goto(path)
    portal.stream()
    page.unroute(url, refuse)
    page.add_script_tag(url=url)


def test_the_dashboard_says_live_when_its_script_runs_after_the_stream_opened(
    page: Page,
    world: World,
    call: Conversation,  # noqa: F811  (the fixture)
    observed: Observed,
) -> None:
    portal = portal_as(page, world, "supervisor")
    held_back(page, portal, "/", "portal/dashboard.js")
    expect(page.locator("#stream-status")).to_have_text("Updates live.")
    assert observed.page_errors == []


def test_the_dashboard_says_paused_when_its_script_runs_after_the_stream_closed(
    page: Page,
    world: World,
    call: Conversation,  # noqa: F811  (the fixture)
    observed: Observed,
) -> None:
    portal = portal_as(page, world, "supervisor")
    url = f"{ORIGIN}/static/portal/dashboard.js"
    page.route(url, lambda route: route.abort())
    portal.goto("/")
    portal.stream().close(code=1011)
    page.wait_for_function("() => document.documentElement.dataset.arlStream === 'closed'")
    page.unroute(url)
    page.add_script_tag(url=url)
    expect(page.locator("#stream-status")).to_have_text("Live updates paused; reconnecting…")
    assert observed.page_errors == []


def test_presence_is_read_again_when_its_script_runs_after_the_stream_opened(
    page: Page,
    world: World,
    call: Conversation,  # noqa: F811  (the fixture)
    observed: Observed,
) -> None:
    portal = portal_as(page, world, "supervisor")
    # Ben left between the page's rendering and its script: only a read tells.
    page.route(f"{ORIGIN}/conversations/{call.pk}/", lambda route: leave_then(route, portal, world))
    held_back(page, portal, f"/conversations/{call.pk}/", "portal/assist.js")
    expect(page.locator("#presence")).to_have_text("Listening now: Ana Lopez")
    assert observed.page_errors == []


def test_the_transcript_catches_up_when_its_script_runs_after_the_stream_opened(
    page: Page,
    world: World,
    call: Conversation,  # noqa: F811  (the fixture)
    observed: Observed,
) -> None:
    portal = portal_as(page, world, "supervisor")
    # A line said between the page's rendering and its script: only a read tells.
    page.route(f"{ORIGIN}/conversations/{call.pk}/", lambda route: say_then(route, portal, call))
    held_back(page, portal, f"/conversations/{call.pk}/", "portal/conversation.js")
    said = page.locator(".arl-line[data-segment-id='u9']")
    expect(said).to_have_text("CallerSaid after the page was rendered.")
    assert observed.page_errors == []


def say_then(route: Route, portal: InProcessPortal, live: Conversation) -> None:
    """Serves the page as it is, then the caller says one more line."""
    portal._serve(route)
    transcripts.record(live, [SegmentIn("u9", "user", "Said after the page was rendered.", True)])


def leave_then(route: Route, portal: InProcessPortal, world: World) -> None:
    """Serves the page as it is, then Ben (qa) leaves the call."""
    portal._serve(route)
    ListenSession.objects.filter(user=world.users["qa"]).update(left_at=timezone.now())
