"""The dashboard's rows after an alert (``portal/static/portal/dashboard.js``): the
alert bumps its row's badge at once, and the rows are fetched again only when a refresh
rendered before the alert could undo that (one in flight when it came), not on every
alert by every supervisor's page.

The portal runs in this process (``portal_pages.InProcessPortal``) and the test plays
the events websocket; ``page.clock`` runs the page's refresh delay where the test needs
to know that none was asked for.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, Request, Route, expect

from anyreach_listen.models import Conversation
from tests.browser.fixtures import Observed
from tests.browser.portal_pages import ORIGIN, InProcessPortal
from tests.browser.test_portal_assist import (  # the in-process portal and its live call
    about,
    call,  # noqa: F401  (fixture)
    in_process,  # noqa: F401  (autouse fixture)
    portal_as,
)
from tests.support.world import World

pytestmark = pytest.mark.browser


ROWS = re.compile(rf"^{re.escape(ORIGIN)}/\?")  # htmx's GET of the rows, with the filters


def is_rows(request: Request) -> bool:
    """A refresh of the dashboard's rows."""
    return bool(ROWS.match(request.url))


def alert(conversation: Conversation, alert_id: str) -> dict[str, Any]:
    return {
        "type": "alert.raised",
        "conversation": about(conversation),
        "can_listen": True,
        "alert": {"id": alert_id, "severity": "warning", "raised_at": timezone.now()},
    }


def opened(page: Page, portal: InProcessPortal) -> list[str]:
    """The dashboard, its stream open and its catch-up refresh done; the rows refreshes
    the page makes from then on."""
    refreshes: list[str] = []
    with page.expect_response(lambda r: is_rows(r.request)):  # the catch-up on open
        portal.goto("/")
    portal.stream()
    page.on("request", lambda r: refreshes.append(r.url) if is_rows(r) else None)
    return refreshes


def test_an_alert_bumps_its_badge_without_fetching_the_rows(
    page: Page,
    world: World,
    call: Conversation,  # noqa: F811  (the fixture)
    observed: Observed,
) -> None:
    portal = portal_as(page, world, "supervisor")
    refreshes = opened(page, portal)
    badge = page.locator(f'tr[data-conversation="{call.pk}"] [data-alert-badge]')
    page.clock.install()  # its timers from here on run when the test says
    portal.send(alert(call, "al1"))
    expect(page.locator("[data-alert-notice]")).to_have_count(1)
    expect(badge).to_have_text("1 alert · Warning")
    page.clock.run_for(1_000)  # past any refresh the alert could have asked for
    page.clock.resume()
    # The fence: a refresh of our own, after which any other would have been made.
    with page.expect_response(lambda r: is_rows(r.request)):
        page.evaluate("() => document.body.dispatchEvent(new Event('arl-refresh'))")
    assert len(refreshes) == 1, refreshes
    assert observed.page_errors == []


def test_an_alert_during_a_refresh_fetches_the_rows_again_after_it(
    page: Page,
    world: World,
    call: Conversation,  # noqa: F811  (the fixture)
    observed: Observed,
) -> None:
    portal = portal_as(page, world, "supervisor")
    refreshes = opened(page, portal)
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route(ROWS, hold)  # the next refresh waits for the test
    page.evaluate("() => document.body.dispatchEvent(new Event('arl-refresh'))")
    deadline = time.monotonic() + 10
    while not held:  # Playwright runs the route handler while the test waits on the page
        assert time.monotonic() < deadline, "the refresh never reached the server"
        page.evaluate("() => 0")
    page.unroute(ROWS, hold)
    portal.send(alert(call, "al1"))  # while a refresh rendered before it is in flight
    expect(page.locator("[data-alert-notice]")).to_have_count(1)
    assert len(refreshes) == 1, refreshes
    with page.expect_request(is_rows):  # fetched again once the one in flight is back
        portal._serve(held[0])
    assert len(refreshes) == 2, refreshes
    assert observed.page_errors == []
