"""Presence and the guidance box in Chromium (``portal/assist.py``, ``assist.js``), with
axe-core's WCAG 2.1 AA rules on the conversation page, the dashboard with its listen
dialog, and the wall; no page runs into its Content-Security-Policy.

The portal runs in this process (``portal_pages.InProcessPortal``), ``guidance.give`` is
a stand-in, and the test plays the events websocket: the real LiveKit path is e2e's.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from playwright.sync_api import Page, expect

from anyreach_listen import transcripts
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


class Given:
    """``guidance.give``'s stand-in: records the call, then delivers it or refuses."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.refusal: ApiError | None = None

    def __call__(
        self, conversation: Conversation, *, mode: str, text: str, audit: Any, request: Any
    ) -> Guidance:
        self.calls.append((mode, text))
        if self.refusal is not None:
            raise self.refusal
        return Guidance.objects.create(
            conversation=conversation,
            user=audit["user"],
            mode=mode,
            text=text,
            status=GuidanceStatus.DELIVERED,
            delivered_at=timezone.now(),
            latency_ms=42,
        )


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


def guidance_event(call: Conversation, **guidance: Any) -> dict[str, Any]:
    return {
        "type": "guidance.updated",
        "event": guidance["status"],
        "conversation": about(call),
        "guidance": {"reason": "", "delivered_at": None, "latency_ms": None, **guidance},
    }


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
    assert given.calls == [("say", "Offer the refund now.")]
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
    assert given.calls[-1] == ("whisper", "Keep it short.")

    # A colleague's guidance reaches the page live, inline where it was given; its
    # status follows, and a late "pending" does not undo "delivered".
    assert call.started_at is not None
    at = (call.started_at + dt.timedelta(seconds=30)).isoformat()
    colleague = {
        "id": "g-2",
        "mode": "whisper",
        "text": "Mention the voucher.",
        "author": "Cy Diaz",
    }
    portal.send(guidance_event(call, **colleague, status="pending", created_at=at))
    line = page.locator('[data-guidance-id="g-2"]')
    expect(line).to_contain_text("Cy Diaz · Pending", timeout=LIVE_MS)
    assert transcript_order(page)[:4] == ["a1", "u1", "g:g-2", "a2"]
    portal.send(guidance_event(call, **colleague, status="delivered", created_at=at))
    expect(line).to_contain_text("Cy Diaz · Delivered", timeout=LIVE_MS)
    portal.send(guidance_event(call, **colleague, status="pending", created_at=at))
    later = {"id": "g-3", "mode": "say", "text": "Thank them.", "author": "Cy Diaz"}
    portal.send(guidance_event(call, **later, status="failed", created_at=timezone.now()))
    expect(page.locator('[data-guidance-id="g-3"]')).to_contain_text("Failed")
    expect(line).to_contain_text("Delivered")
    assert transcript_order(page).count("g:g-2") == 1

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
    assert given.calls == [("whisper", "Ask for the order number.")]

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
