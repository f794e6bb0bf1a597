"""The dashboard's rows (``portal/static/portal/dashboard.js``). After an alert: the
alert bumps its row's badge at once, and the rows are fetched again only when a refresh
rendered before the alert could undo that (one in flight when it came), not on every
alert by every supervisor's page. With more calls than its first rows: Show more, by
keyboard (the focus goes to the first new row) or scrolled into view, keeps its rows
through later refreshes, which put the focus back where it was; axe-clean.

The portal runs in this process (``portal_pages.InProcessPortal``) and the test plays
the events websocket; ``page.clock`` runs the page's refresh delay where the test needs
to know that none was asked for.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, Request, Route, expect

from anyreach_listen.models import Conversation, ConversationStatus
from portal.paging import ROWS_STEP
from tests.browser.fixtures import Observed
from tests.browser.portal_pages import ORIGIN, InProcessPortal
from tests.browser.test_portal_assist import (  # the in-process portal and its live call
    about,
    call,  # noqa: F401  (fixture)
    in_process,  # noqa: F401  (autouse fixture)
    portal_as,
)
from tests.support.axe import assert_accessible
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


# ---- more calls than the first rows ----

MORE = 7  # calls past the first rows


@pytest.fixture
def floor(world: World) -> list[Conversation]:
    """Live Support calls past the dashboard's first rows, newest first (the world's own
    live calls have not started: they come last)."""
    now = timezone.now()
    return Conversation.objects.bulk_create(
        Conversation(
            organization=world.org,
            team=world.team,
            status=ConversationStatus.IN_PROGRESS,
            livekit_room=f"floor-{i}",
            caller_label=f"+1 555 {i:04d}",
            agent_label="Ava",
            started_at=now - dt.timedelta(seconds=i),
        )
        for i in range(ROWS_STEP + MORE)
    )


def live_calls(world: World) -> int:
    """The live calls the supervisor sees (the floor's and the world's own)."""
    return Conversation.objects.active().filter(team=world.team).count()


ROW_LINKS = "#rows tr[data-conversation] th a"


def test_show_more_by_keyboard_moves_the_focus_to_the_first_new_row_and_stays(
    page: Page, world: World, floor: list[Conversation], observed: Observed
) -> None:
    portal = portal_as(page, world, "supervisor")
    refreshes = opened(page, portal)
    total = live_calls(world)
    rows = page.locator("#rows tr[data-conversation]")
    expect(rows).to_have_count(ROWS_STEP)
    more = page.get_by_role("button", name=f"Show {total - ROWS_STEP} more")
    expect(page.locator("[data-rows-count]")).to_have_text(
        f"Showing {ROWS_STEP} of {total} conversations."
    )
    assert_accessible(page)

    more.focus()  # as a screen reader's list of buttons would: it scrolls into view
    expect(more).to_be_focused()  # focused, it waits to be pressed
    page.keyboard.press("Enter")
    expect(rows).to_have_count(total)
    expect(rows.nth(ROWS_STEP).locator("th a")).to_be_focused()
    expect(page.locator("[data-rows-more]")).to_have_count(0)  # every call is shown
    assert [f"rows={total}" in url for url in refreshes] == [True]

    # A later refresh (an event) keeps every row, and the focus on its row's link.
    focused = rows.nth(3)
    focused.locator("th a").focus()
    call_id = focused.get_attribute("data-conversation") or ""
    with page.expect_response(lambda r: is_rows(r.request)):
        page.evaluate("() => document.body.dispatchEvent(new Event('arl-refresh'))")
    expect(rows).to_have_count(total)
    expect(page.locator(f'tr[data-conversation="{call_id}"] th a')).to_be_focused()
    assert f"rows={total}" in refreshes[-1]

    # That call ends: the focus goes to the row that takes its place, still in the table.
    Conversation.objects.filter(pk=call_id).update(status=ConversationStatus.COMPLETED)
    next_id = rows.nth(4).get_attribute("data-conversation")
    with page.expect_response(lambda r: is_rows(r.request)):
        page.evaluate("() => document.body.dispatchEvent(new Event('arl-refresh'))")
    expect(rows).to_have_count(total - 1)
    expect(page.locator(f'tr[data-conversation="{next_id}"] th a')).to_be_focused()
    assert_accessible(page)
    assert observed.page_errors == []
    assert portal.csp_violations == []


def test_show_more_loads_when_scrolled_into_view_and_the_filters_start_over(
    page: Page, world: World, floor: list[Conversation], observed: Observed
) -> None:
    portal = portal_as(page, world, "supervisor")
    refreshes = opened(page, portal)
    total = live_calls(world)
    rows = page.locator("#rows tr[data-conversation]")
    expect(rows).to_have_count(ROWS_STEP)
    page.locator("[data-rows-more]").scroll_into_view_if_needed()
    expect(rows).to_have_count(total)  # no click
    assert page.evaluate("() => document.activeElement === document.body")
    assert [f"rows={total}" in url for url in refreshes] == [True]

    # Other filters: their first rows (Show more's count is not carried over).
    with page.expect_response(lambda r: is_rows(r.request)):
        page.get_by_label("Search").fill("+1 555 00")
    expect(rows).to_have_count(ROWS_STEP)
    assert "rows=" not in refreshes[-1]
    assert observed.page_errors == []


def test_tabbing_to_the_last_rows_loads_more_and_the_focus_stays(
    page: Page, world: World, floor: list[Conversation], observed: Observed
) -> None:
    portal = portal_as(page, world, "supervisor")
    opened(page, portal)
    rows = page.locator("#rows tr[data-conversation]")
    expect(rows).to_have_count(ROWS_STEP)
    last = rows.nth(ROWS_STEP - 2).locator("td a")  # its Open, then Tab to the last row
    last.focus()
    page.keyboard.press("Tab")
    call_id = rows.nth(ROWS_STEP - 1).get_attribute("data-conversation")
    # Show more came into view and loaded; the rows were replaced, the focus is kept.
    expect(rows).to_have_count(live_calls(world))
    expect(page.locator(f'tr[data-conversation="{call_id}"] th a')).to_be_focused()
    assert observed.page_errors == []


def test_an_alert_for_a_call_not_shown_yet_breaks_nothing(
    page: Page, world: World, floor: list[Conversation], observed: Observed
) -> None:
    portal = portal_as(page, world, "supervisor")
    refreshes = opened(page, portal)
    unseen = floor[-1]  # the oldest of the floor: past the first rows
    expect(page.locator(f'tr[data-conversation="{unseen.pk}"]')).to_have_count(0)
    with page.expect_response(lambda r: is_rows(r.request)):  # a refresh: it may be new
        portal.send(alert(unseen, "al1"))
    expect(page.locator("[data-alert-notice]")).to_have_count(1)
    expect(page.locator("#rows tr[data-conversation]")).to_have_count(ROWS_STEP)
    expect(page.locator("[data-rows-count]")).to_have_text(
        f"Showing {ROWS_STEP} of {live_calls(world)} conversations."
    )
    assert len(refreshes) == 1
    assert observed.page_errors == []
