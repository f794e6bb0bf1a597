"""Presence and the guidance box in Chromium (``portal/assist.py``, ``assist.js``), with
axe-core's WCAG 2.1 AA rules on the conversation page, the dashboard with its listen
dialog, and the wall; no page runs into its Content-Security-Policy.

The portal runs in this process (``portal_pages.InProcessPortal``), ``guidance.give`` is
a stand-in, and the test plays the events websocket: the real LiveKit path is e2e's.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from playwright.sync_api import Page, Route, expect

from anyreach_listen import events, transcripts
from anyreach_listen.api.errors import ApiError, Errors
from anyreach_listen.assist import guidance
from anyreach_listen.listening.minting import grant_listen
from anyreach_listen.models import (
    Conversation,
    ConversationStatus,
    Guidance,
    GuidanceStatus,
    ListenSession,
    ListenVia,
)
from anyreach_listen.transcripts import SegmentIn
from tests.browser.fixtures import Observed
from tests.browser.portal_pages import HOST, InProcessPortal
from tests.support.axe import assert_accessible
from tests.support.portal_guidance import Given
from tests.support.world import World

pytestmark = pytest.mark.browser

NAMES = {"supervisor": ("Ana", "Lopez"), "qa": ("Ben", "Ng"), "admin": ("Cy", "Diaz")}
LIVE_MS = 1000  # a join, a leave or guidance shows within this of its event


@pytest.fixture(autouse=True)
def in_process(
    django_db_setup: None, transactional_db: None, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    # Playwright's sync API runs its event loop on this thread and the route handlers
    # that call the test client inside it, in their own context (so with their own
    # database connection: the data is committed, not in the test's transaction).
    # Django would take their queries for async code: allowed for these tests only. The
    # test database is made first (autouse and its dependency order it before Chromium
    # starts), outside that allowance.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.ALLOWED_HOSTS = [HOST]
    settings.CHANNEL_LAYERS = {}  # the test plays the event stream: nothing is published


def listening(world: World, call: Conversation, role: str) -> ListenSession:
    session = grant_listen(call, via=ListenVia.PORTAL, audit={"user": world.users[role]})
    ListenSession.objects.filter(pk=session.listen_session.pk).update(joined_at=timezone.now())
    return session.listen_session


@pytest.fixture
def call(world: World) -> Conversation:
    """The world's live Support call, two minutes in, with Ana and Ben listening."""
    for role, (first, last) in NAMES.items():
        user = world.users[role]
        user.first_name, user.last_name = first, last
        user.save()
    live = world.conversations[ConversationStatus.IN_PROGRESS]
    start = timezone.now() - dt.timedelta(minutes=2)
    Conversation.objects.filter(pk=live.pk).update(
        started_at=start, caller_label="+1 555 0142", agent_label="Ava"
    )
    live.refresh_from_db()
    for seconds, sid, role, text in [
        (5, "a1", "agent", "Thanks for calling Acme, how can I help?"),
        (20, "u1", "user", "I was charged twice for my order."),
        (60, "a2", "agent", "Let me look at your order."),
    ]:
        transcripts.record(
            live, [SegmentIn(sid, role, text, True)], at=start + dt.timedelta(seconds=seconds)
        )
    listening(world, live, "supervisor")
    listening(world, live, "qa")
    return live


def portal_as(page: Page, world: World, role: str) -> InProcessPortal:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.users[role])
    return InProcessPortal(page, client)


@pytest.fixture
def given(monkeypatch: pytest.MonkeyPatch) -> Iterator[Given]:
    stand_in = Given()
    monkeypatch.setattr(guidance, "give", stand_in)
    yield stand_in


def about(call: Conversation) -> dict[str, Any]:
    return {"id": str(call.pk), "is_active": True, "caller_label": call.caller_label}


def listener_event(call: Conversation, event: str) -> dict[str, Any]:
    return {
        "type": "listener.updated",
        "event": event,
        "conversation": about(call),
        "listen_session_id": str(uuid.uuid4()),
    }


def guidance_event(row: Guidance) -> dict[str, Any]:
    """The ``guidance.updated`` message the events consumer forwards for ``row`` as it is
    now (the payloads of ``anyreach_listen.events``), for events.js to dispatch."""
    row.refresh_from_db()
    return {
        "type": "guidance.updated",
        "event": row.status,
        "conversation": events.live_conversation(row.conversation).as_json(),
        "guidance": events.live_guidance(row).as_json(),
    }


def given_by(
    world: World, call: Conversation, role: str, at: dt.datetime, **fields: Any
) -> Guidance:
    return Guidance.objects.create(
        conversation=call, user=world.users[role], created_at=at, **fields
    )


def transcript_order(page: Page, scope: str = "") -> list[str]:
    """The panel's lines: segment ids, and g:<id> for guidance."""
    return list(
        page.evaluate(
            """(scope) => [...document.querySelectorAll(`${scope} [data-arl-transcript] .arl-line`)]
              .map((li) => li.dataset.segmentId || `g:${li.dataset.guidanceId}`)""",
            scope,
        )
    )


def assert_csp_clean(portal: InProcessPortal) -> None:
    """No violation, and an inline script the page did not ship is refused and reported:
    the policy is enforced and the recorder hears it, so the empty list means something."""
    assert portal.csp_violations == []
    portal.page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.probeRan = true'; document.head.append(s); }"
    )
    portal.page.wait_for_function("() => window.cspReported > 0")
    assert portal.page.evaluate("() => window.probeRan") is None  # and the report is in
    assert portal.csp_violations and "script-src" in portal.csp_violations[0]


def test_the_conversation_page_shows_presence_and_guides_the_agent(
    page: Page, world: World, call: Conversation, given: Given, observed: Observed
) -> None:
    portal = portal_as(page, world, "supervisor")
    portal.goto(f"/conversations/{call.pk}/")
    presence = page.locator("#presence")
    expect(presence).to_have_text("Listening now: Ana Lopez, Ben Ng")
    portal.stream()
    assert_accessible(page)

    # Ben leaves, Cy joins: each event refetches the line.
    ListenSession.objects.filter(user=world.users["qa"]).update(left_at=timezone.now())
    portal.send(listener_event(call, "left"))
    expect(presence).to_have_text("Listening now: Ana Lopez", timeout=LIVE_MS)
    listening(world, call, "admin")
    portal.send(listener_event(call, "joined"))
    expect(presence).to_have_text("Listening now: Ana Lopez, Cy Diaz", timeout=LIVE_MS)

    # Say now, delivered: the status is read out, the box empties, the line joins the log.
    box = page.get_by_role("form", name="Guidance to the agent")
    text = box.get_by_label("What to tell the agent")
    status = page.locator("#guidance-status")
    text.fill("Offer the refund now.")
    box.get_by_role("button", name="Say now").click()
    expect(status).to_have_text("Delivered: the agent says it now (42 ms).")
    expect(status).to_have_attribute("role", "status")
    expect(text).to_have_value("")
    assert given.sent == [("say", "Offer the refund now.")]
    mine = page.locator("[data-arl-transcript] .arl-guidance")
    expect(mine).to_have_count(1)
    expect(mine).to_contain_text("Say now")
    expect(mine).to_contain_text("Offer the refund now.Ana Lopez · Delivered")
    assert transcript_order(page)[-1].startswith("g:")

    # A whisper by keyboard alone, refused: the reason is shown, the text kept to retry.
    given.refusal = ApiError(Errors.AGENT_NOT_PRESENT)
    text.focus()
    page.keyboard.type("Keep it short.")
    page.keyboard.press("Tab")
    expect(box.get_by_role("button", name="Whisper")).to_be_focused()
    page.keyboard.press("Enter")
    expect(status).to_have_text(f"Not delivered: {Errors.AGENT_NOT_PRESENT.message}")
    expect(text).to_have_value("Keep it short.")
    assert given.sent[-1] == ("whisper", "Keep it short.")

    # A colleague's guidance reaches the page live through events.js (as the consumer
    # sends it), inline where it was given; its status follows, and a late "pending"
    # does not undo "delivered".
    assert call.started_at is not None
    colleague = given_by(
        world,
        call,
        "admin",
        call.started_at + dt.timedelta(seconds=30),
        mode="whisper",
        text="Mention the voucher.",
        status=GuidanceStatus.PENDING,
    )
    pending = guidance_event(colleague)
    portal.send(pending)
    line = page.locator(f'[data-guidance-id="{colleague.pk}"]')
    expect(line).to_contain_text("Cy Diaz · Pending", timeout=LIVE_MS)
    assert transcript_order(page)[:4] == ["a1", "u1", f"g:{colleague.pk}", "a2"]
    Guidance.objects.filter(pk=colleague.pk).update(
        status=GuidanceStatus.DELIVERED, delivered_at=timezone.now(), latency_ms=80
    )
    portal.send(guidance_event(colleague))
    expect(line).to_contain_text("Cy Diaz · Delivered", timeout=LIVE_MS)
    portal.send(pending)
    later = given_by(
        world,
        call,
        "admin",
        timezone.now(),
        mode="say",
        text="Thank them.",
        status=GuidanceStatus.FAILED,
        reason="no agent",
    )
    portal.send(guidance_event(later))
    expect(page.locator(f'[data-guidance-id="{later.pk}"]')).to_contain_text("Failed")
    expect(line).to_contain_text("Delivered")
    assert transcript_order(page).count(f"g:{colleague.pk}") == 1

    # Given while the stream was down (a reconnect replays nothing): the catch-up
    # read brings it, once, where it was given; the presence line is read again too.
    Guidance.objects.create(
        conversation=call,
        user=world.users["admin"],
        mode="whisper",
        text="Check the first charge.",
        status=GuidanceStatus.DELIVERED,
        created_at=call.started_at + dt.timedelta(seconds=10),
    )
    ListenSession.objects.filter(user=world.users["admin"]).update(left_at=timezone.now())
    portal.stream().close()
    page.wait_for_function("() => window.streamOpened === 2")
    expect(page.locator(".arl-guidance", has_text="Check the first charge.")).to_have_count(1)
    expect(presence).to_have_text("Listening now: Ana Lopez")
    assert transcript_order(page)[:3] == ["a1", transcript_order(page)[1], "u1"]
    assert transcript_order(page)[1].startswith("g:")

    assert_accessible(page)  # with the lines, the status and the presence as they are now
    assert observed.page_errors == []
    assert_csp_clean(portal)


MARKUP = "<img src=x onerror=alert(1)>"
# assist.js's words when the answer is not the status fragment.
UNEXPECTED = (
    "Not sent: the server's answer was not a delivery status (your session may have "
    "expired). Reload the page and try again."
)
FOREIGN_PAGE = (
    "<!doctype html><title>403 Forbidden</title><h1 id=foreign>Forbidden (403)</h1>"
    "<p>CSRF verification failed. Request aborted.</p><img src=x>"
)


def answering(answer: dict[str, Any]) -> Callable[[Route], None]:
    """A route handler answering every request with ``answer`` (Route.fulfill's args)."""
    return lambda route: route.fulfill(**answer)


def test_markup_is_text_and_foreign_answers_never_land_in_the_box(
    page: Page, world: World, call: Conversation, given: Given, observed: Observed
) -> None:
    ana = world.users["supervisor"]
    ana.first_name, ana.last_name = MARKUP, ""  # an author (and listener) named in markup
    ana.save()
    portal = portal_as(page, world, "supervisor")
    portal.goto(f"/conversations/{call.pk}/")
    portal.stream()
    expect(page.locator("#presence")).to_have_text(f"Listening now: {MARKUP}, Ben Ng")
    box = page.get_by_role("form", name="Guidance to the agent")
    text = box.get_by_label("What to tell the agent")
    status = page.locator("#guidance-status")
    guidance_lines = page.locator("[data-arl-transcript] .arl-guidance")

    # Through the box: the status and the line show the text and the author as text.
    text.fill(MARKUP)
    box.get_by_role("button", name="Say now").click()
    expect(status).to_have_text("Delivered: the agent says it now (42 ms).")
    expect(guidance_lines).to_have_count(1)
    expect(guidance_lines.first).to_contain_text(f"{MARKUP}{MARKUP} · Delivered")

    # Live, as events.js dispatches the consumer's message.
    live = given_by(
        world,
        call,
        "supervisor",
        timezone.now(),
        mode="whisper",
        text=f"Live {MARKUP}",
        status=GuidanceStatus.FAILED,
        reason=MARKUP,
    )
    portal.send(guidance_event(live))
    line = page.locator(f'[data-guidance-id="{live.pk}"]')
    expect(line).to_contain_text(f"Live {MARKUP}{MARKUP} · Failed", timeout=LIVE_MS)
    expect(page.locator("[data-arl-announce]")).to_have_text(f"Guidance, Whisper: Live {MARKUP}")

    # Answers that are not the status fragment: a fixed message, never their markup.
    route = f"**/conversations/{call.pk}/guidance/"
    answers = [
        {"status": 403, "content_type": "text/html", "body": FOREIGN_PAGE},  # CSRF failure
        {"status": 500, "content_type": "text/html", "body": FOREIGN_PAGE},  # server error
        {"status": 500, "content_type": "text/plain", "body": "Traceback (most recent…"},
    ]
    for answer in answers:
        page.route(route, answering(answer))
        text.fill("Keep it short.")
        box.get_by_role("button", name="Whisper").click()
        expect(status).to_have_text(UNEXPECTED)
        expect(status).to_have_attribute("data-state", "failed")
        expect(status.locator("*")).to_have_count(0)
        expect(text).to_have_value("Keep it short.")  # kept, to retry
        page.unroute(route)
    # The session expired: Django's own refusal page (its CSRF check fails first).
    portal.client.logout()
    box.get_by_role("button", name="Say now").click()
    expect(status).to_have_text(UNEXPECTED)
    expect(status.locator("*")).to_have_count(0)
    assert given.sent == [("say", MARKUP)]  # only the first reached the agent

    assert page.locator("#foreign").count() == 0
    assert page.locator("main img, #presence img, [data-arl-transcript] img").count() == 0
    assert observed.page_errors == []
    assert_csp_clean(portal)  # no inline handler ever tried to run


def test_a_viewer_sees_neither_presence_nor_the_box(
    page: Page, world: World, call: Conversation, observed: Observed
) -> None:
    portal = portal_as(page, world, "viewer")
    portal.goto(f"/conversations/{call.pk}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("+1 555 0142")
    portal.stream()
    assert page.locator("#presence").count() == 0
    assert page.get_by_role("form", name="Guidance to the agent").count() == 0
    assert page.locator("[data-arl-transcript]").count() == 0
    assert "Ana Lopez" not in page.content()
    assert_accessible(page)
    assert observed.page_errors == []
    assert portal.csp_violations == []


def test_the_dashboard_counts_listeners_and_its_dialog_guides(
    page: Page, world: World, call: Conversation, given: Given, observed: Observed
) -> None:
    portal = portal_as(page, world, "supervisor")
    portal.goto("/")
    count = page.locator(f'tr[data-conversation="{call.pk}"] [data-listeners]')
    expect(count).to_have_text("2")
    portal.stream()
    assert_accessible(page)

    listening(world, call, "admin")
    portal.send(listener_event(call, "joined"))
    expect(count).to_have_text("3", timeout=LIVE_MS)

    # An alert's Listen opens the call in the dialog: presence and the box come with it.
    portal.send(
        {
            "type": "alert.raised",
            "conversation": about(call),
            "can_listen": True,
            "alert": {"id": "al1", "severity": "warning", "raised_at": timezone.now()},
        }
    )
    page.get_by_role("button", name="Listen").click()
    dialog = page.locator("#listen-dialog")
    expect(dialog.locator("#presence")).to_have_text("Listening now: Ana Lopez, Ben Ng, Cy Diaz")
    box = dialog.get_by_role("form", name="Guidance to the agent")
    box.get_by_label("What to tell the agent").fill("Ask for the order number.")
    box.get_by_role("button", name="Whisper").click()
    expect(dialog.locator("#guidance-status")).to_contain_text("Delivered")
    expect(dialog.locator(".arl-guidance")).to_contain_text("Ask for the order number.")
    assert given.sent == [("whisper", "Ask for the order number.")]

    ListenSession.objects.filter(user=world.users["qa"]).update(left_at=timezone.now())
    portal.send(listener_event(call, "left"))
    expect(dialog.locator("#presence")).to_have_text(
        "Listening now: Ana Lopez, Cy Diaz", timeout=LIVE_MS
    )
    assert_accessible(page)  # the dialog open, the page behind it inert
    assert observed.page_errors == []
    assert portal.csp_violations == []


def test_the_wall_passes_axe(
    page: Page, world: World, call: Conversation, observed: Observed
) -> None:
    other = world.conversations["no_room"]
    Conversation.objects.filter(pk=other.pk).update(livekit_room="room-two")
    portal = portal_as(page, world, "supervisor")
    portal.goto("/wall/")
    tiles = page.locator("[data-wall-tile]")
    expect(tiles.first).to_be_visible()
    assert tiles.count() >= 2  # calls with the same labels: their panels' names collide
    assert_accessible(page)
    assert observed.page_errors == []
    assert portal.csp_violations == []
