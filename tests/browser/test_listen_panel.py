"""The listen panel's transcript list in Chromium: a panel adopts its server-rendered
recorded lines and merges live segments by role and segment id. The SDK is a stand-in
the test drives, so what is tested is the panel's list, not LiveKit.

Also the portal's dashboard dialog and listen wall: a final line from the event stream,
said after the server rendered a panel and before its SDK session joined, lands in that
panel once.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.template.loader import render_to_string
from playwright.sync_api import Page, Route

from anyreach_listen.transcripts import SegmentOut
from tests.browser.fixtures import TIMEOUT_MS, Observed
from tests.browser.pages import EmbeddingSite
from tests.support.processes import ROOT

PANEL_JS = ROOT / "anyreach_listen" / "static" / "anyreach_listen" / "panel" / "listen-panel.js"
DASHBOARD_JS = ROOT / "portal" / "static" / "portal" / "dashboard.js"
WALL_JS = ROOT / "portal" / "static" / "portal" / "wall.js"
ZERO_ID = "00000000-0000-0000-0000-000000000000"
TOKEN_PATH = "/token"
T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)

# The SDK's stand-in: one session per listen(); the test emits its events.
FAKE_SDK = """
window.fake = { sessions: [] };
window.AnyReach = {
  listen() {
    const handlers = {};
    const session = {
      handlers,
      on(name, handler) { handlers[name] = handler; return session; },
      emit(name, payload) { handlers[name] && handlers[name](payload); },
      mute() {}, unmute() {}, startAudio() { return Promise.resolve(); },
      connect() {
        if (fake.holdJoin) return new Promise(() => {}); // a session still joining
        session.emit("stateChange", "connected");
        return Promise.resolve();
      },
      end() { return Promise.resolve(); },
    };
    fake.sessions.push(session);
    return session;
  },
};
"""


def panel_html(
    segments: list[SegmentOut], *, pk: str = "c1", compact: bool = False, autoconnect: bool = True
) -> str:
    conversation = SimpleNamespace(
        pk=pk, is_active=True, started_at=T0, caller_label="+1 555 0100", agent_label="Ava"
    )
    return render_to_string(
        "anyreach_listen/listen_panel.html",
        {
            "conversation": conversation,
            "can_listen": True,
            "token_url": TOKEN_PATH,
            "csrf_token": "x",
            "compact": compact,
            "autoconnect": autoconnect,
            "transcript": segments,
        },
    )


def open_panel(page: Page, site: EmbeddingSite, segments: list[SegmentOut]) -> None:
    site.add("/static/listen-panel.js", PANEL_JS.read_text(), "text/javascript")
    site.add("/static/fake-sdk.js", FAKE_SDK, "text/javascript")

    def token(route: Route) -> None:
        route.fulfill(json={"url": "ws://livekit.invalid", "token": "t"})

    page.route(f"**{TOKEN_PATH}", token)
    head = (
        '<script src="/static/fake-sdk.js"></script>'
        '<script src="/static/listen-panel.js" defer></script>'
    )
    page.goto(site.add("/panel.html", f"<!doctype html><head>{head}</head><body>"
                       f"{panel_html(segments)}</body>"))  # fmt: skip
    page.wait_for_function(
        "() => fake.sessions.length === 1 && fake.sessions[0].handlers.transcript"
    )


def say(page: Page, *segments: dict[str, object]) -> None:
    for segment in segments:
        page.evaluate("(s) => fake.sessions[0].emit('transcript', s)", segment)


def lines(page: Page, scope: str = "") -> list[tuple[str, str, str, bool]]:
    result = page.evaluate(
        """(scope) => [...document.querySelectorAll(`${scope} [data-arl-transcript] .arl-line`)]
          .map((li) => [
            li.dataset.role, li.dataset.segmentId,
            li.querySelector(".arl-line__text").textContent, !li.classList.contains("is-interim"),
          ])""",
        scope,
    )
    return [tuple(line) for line in result]


RECORDED = [
    SegmentOut("a1", "agent", "Thanks for calling.", True, T0 + dt.timedelta(seconds=1)),
    SegmentOut("u1", "user", "I was", False, T0 + dt.timedelta(seconds=3)),
]


@pytest.mark.browser
def test_recorded_lines_are_adopted_and_live_segments_merge_by_role_and_id(
    page: Page, site: EmbeddingSite, observed: Observed
) -> None:
    open_panel(page, site, RECORDED)
    assert lines(page) == [
        ("agent", "a1", "Thanks for calling.", True),
        ("user", "u1", "I was", False),
    ]
    assert page.locator("[data-arl-empty]").count() == 0

    say(
        page,
        {"id": "a1", "role": "agent", "text": "Thanks for calling.", "final": True},  # replay
        {"id": "a1", "role": "agent", "text": "Thanks", "final": False},  # a late interim
        {"id": "u1", "role": "user", "text": "I was charged", "final": False},
        {"id": "u1", "role": "user", "text": "I was charged twice.", "final": True},
        {"id": "u1", "role": "user", "text": "I was", "final": False},  # after its final
        {"id": "a1", "role": "user", "text": "The caller reusing a1.", "final": True},
        {"id": "a2", "role": "agent", "text": "Let me check.", "final": True},
    )
    assert lines(page) == [
        ("agent", "a1", "Thanks for calling.", True),  # settled: neither replay nor interim
        ("user", "u1", "I was charged twice.", True),  # the recorded interim settled
        ("user", "a1", "The caller reusing a1.", True),  # another speaker: its own line
        ("agent", "a2", "Let me check.", True),
    ]

    # Lines fetched to fill a gap slot in by when they were first seen.
    fetched = [
        {"id": "a0", "role": "agent", "text": "Hello.", "final": True, "at": T0.isoformat()},
        {"id": "u0", "role": "user", "text": "Hi!", "final": True,
         "at": (T0 + dt.timedelta(seconds=2)).isoformat()},
        {"id": "a1", "role": "agent", "text": "Thanks for calling.", "final": True,
         "at": (T0 + dt.timedelta(seconds=1)).isoformat()},
    ]  # fmt: skip
    page.evaluate(
        "(s) => AnyReachListenPanel.addSegments(document.querySelector('[data-arl-panel]'), s)",
        fetched,
    )
    assert [(role, sid) for role, sid, _, _ in lines(page)] == [
        ("agent", "a0"),
        ("agent", "a1"),
        ("user", "u0"),
        ("user", "u1"),
        ("user", "a1"),
        ("agent", "a2"),
    ]
    assert observed.page_errors == [], observed.page_errors


@pytest.mark.browser
def test_a_panel_without_recorded_lines_starts_empty_and_fills_live(
    page: Page, site: EmbeddingSite, observed: Observed
) -> None:
    open_panel(page, site, [])
    assert page.locator("[data-arl-empty]").count() == 1
    say(page, {"id": "a1", "role": "agent", "text": "Hello", "final": False})
    say(page, {"id": "a1", "role": "agent", "text": "Hello there.", "final": True})
    assert lines(page) == [("agent", "a1", "Hello there.", True)]
    assert page.locator("[data-arl-empty]").count() == 0
    assert observed.page_errors == []


def test_the_recorded_lines_template_is_the_live_markup() -> None:
    """What the server renders is what the panel's script builds for a live line."""
    html = render_to_string("anyreach_listen/_transcript_lines.html", {"segments": RECORDED})
    assert html.strip().startswith(
        '<li class="arl-line" data-role="agent" data-segment-id="a1" '
        f'data-at="{RECORDED[0].at.isoformat()}"><span class="arl-line__role">Agent</span>'
        '<span class="arl-line__text">Thanks for calling.</span></li>'
    )
    assert '<li class="arl-line is-interim" data-role="user" data-segment-id="u1"' in html
    script = Path(PANEL_JS).read_text()
    for piece in ('"arl-line"', '"arl-line__role"', '"arl-line__text"', '"is-interim"'):
        assert piece in script, piece


# ---- the portal's dialog and wall: final lines from the event stream ----


def portal_page(page: Page, site: EmbeddingSite, name: str, script: Path, body: str) -> None:
    """A page with the panel script, an SDK whose sessions never join, and a portal script."""
    site.add("/static/listen-panel.js", PANEL_JS.read_text(), "text/javascript")
    site.add("/static/fake-sdk.js", FAKE_SDK, "text/javascript")
    site.add(f"/static/{script.name}", script.read_text(), "text/javascript")
    page.route(f"**{TOKEN_PATH}", lambda route: route.fulfill(json={"url": "ws://x", "token": "t"}))
    head = (
        '<script src="/static/fake-sdk.js"></script><script>fake.holdJoin = true;</script>'
        '<script src="/static/listen-panel.js" defer></script>'
        f'<script src="/static/{script.name}" defer></script>'
    )
    page.goto(site.add(f"/{name}.html", f"<!doctype html><head>{head}</head><body>{body}</body>"))
    page.wait_for_function("() => window.AnyReachListenPanel !== undefined")


def stream(page: Page, conversation: str, segment_id: str, role: str, text: str, at: str) -> None:
    """What events.js dispatches for a transcript.segment message."""
    detail = {
        "type": "transcript.segment",
        "conversation": {"id": conversation, "is_active": True},
        "segment": {"id": segment_id, "role": role, "text": text, "at": at},
    }
    page.evaluate(
        "(d) => document.dispatchEvent(new CustomEvent('anyreach:transcript', {detail: d}))",
        detail,
    )


def held(page: Page, pattern: str) -> list[Route]:
    """Requests to ``pattern`` wait in the returned list until the test fulfils them."""
    waiting: list[Route] = []
    page.route(pattern, lambda route: waiting.append(route))
    return waiting


def wait_for_requests(page: Page, waiting: list[Route], count: int) -> None:
    """Let Playwright dispatch route events (it does while waiting) until ``count`` are held."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while len(waiting) < count:
        assert time.monotonic() < deadline, f"{len(waiting)} of {count} requests held"
        page.wait_for_timeout(20)


def at(seconds: int) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).isoformat()


@pytest.mark.browser
def test_the_dashboard_dialog_gets_the_lines_said_before_its_session_joined(
    page: Page, site: EmbeddingSite, observed: Observed
) -> None:
    body = (
        f'<div id="alert-notices" data-listen-url="/listen/{ZERO_ID}"'
        f' data-conversation-url="/conversations/{ZERO_ID}"></div>'
        '<table><tr data-conversation="c1"><td data-last-line></td>'
        "<td><span data-alert-badge hidden></span></td></tr></table>"
        '<dialog id="listen-dialog"><div data-dialog-body></div></dialog>'
    )
    fragments = held(page, "**/listen/c1")
    portal_page(page, site, "dashboard", DASHBOARD_JS, body)
    alert = {
        "type": "alert.raised",
        "conversation": {"id": "c1", "is_active": True},
        "can_listen": True,
        "alert": {"id": "al1", "severity": "warning", "raised_at": at(4), "phrase": "twice"},
    }
    page.evaluate(
        "(d) => document.dispatchEvent(new CustomEvent('anyreach:alert', {detail: d}))", alert
    )
    page.click("[data-alert-listen='c1']")
    page.wait_for_function("() => document.getElementById('listen-dialog').open")
    wait_for_requests(page, fragments, 1)

    # Said while the dialog's panel is being fetched (rendered before this line).
    stream(page, "c1", "u2", "user", "Yes, on the fifth.", at(6))
    stream(page, "c2", "x1", "agent", "Another call.", at(6))
    dialog = f'<div data-listen-dialog-panel="c1">{panel_html(RECORDED, autoconnect=False)}</div>'
    fragments[0].fulfill(body=dialog, content_type="text/html")
    page.wait_for_function("() => fake.sessions.length === 1")  # joining, never joined
    assert page.locator("[data-arl-panel]").get_attribute("data-state") == "connecting"

    # Said after the panel mounted, before its session joined; one of them twice.
    stream(page, "c1", "u1", "user", "I was charged twice.", at(3))
    stream(page, "c1", "a2", "agent", "Let me check.", at(7))
    stream(page, "c1", "a2", "agent", "Let me check.", at(7))
    # The session joins and hears the last line too.
    page.evaluate(
        "(s) => fake.sessions[0].emit('transcript', s)",
        {"id": "a2", "role": "agent", "text": "Let me check.", "final": True},
    )
    assert lines(page, "#listen-dialog") == [
        ("agent", "a1", "Thanks for calling.", True),
        ("user", "u1", "I was charged twice.", True),
        ("user", "u2", "Yes, on the fifth.", True),
        ("agent", "a2", "Let me check.", True),
    ]
    assert page.locator("tr[data-conversation='c1'] .last-line__text").text_content() == (
        "Let me check."
    )
    assert observed.page_errors == [], observed.page_errors


@pytest.mark.browser
def test_the_wall_tiles_get_the_lines_said_before_their_sessions_joined(
    page: Page, site: EmbeddingSite, observed: Observed
) -> None:
    tile = '<div class="wall__tile" data-wall-tile="{pk}">{panel}</div>'
    first = tile.format(pk="c1", panel=panel_html(RECORDED, compact=True))
    body = (
        f'<div id="wall" data-limit="4" data-tile-url="/wall/tiles/{ZERO_ID}">{first}'
        '<p class="wall__empty" hidden>No live calls.</p></div>'
    )
    tiles = held(page, "**/wall/tiles/c2")
    portal_page(page, site, "wall", WALL_JS, body)
    page.wait_for_function("() => fake.sessions.length === 1")  # joining, never joined

    # A tile rendered with the page: lines said since reach it, once each.
    stream(page, "c1", "u1", "user", "I was charged twice.", at(3))
    stream(page, "c1", "a2", "agent", "Let me check.", at(7))
    stream(page, "c1", "a2", "agent", "Let me check.", at(7))
    assert lines(page, "[data-wall-tile='c1']") == [
        ("agent", "a1", "Thanks for calling.", True),
        ("user", "u1", "I was charged twice.", True),
        ("agent", "a2", "Let me check.", True),
    ]

    # A call that starts later: its tile is fetched; a line said meanwhile joins it.
    page.evaluate(
        """() => document.dispatchEvent(new CustomEvent("anyreach:conversation", {detail: {
          type: "conversation.updated", conversation: {id: "c2", is_active: true}}}))"""
    )
    wait_for_requests(page, tiles, 1)
    stream(page, "c2", "b1", "agent", "Hello, second call.", at(8))
    second = [SegmentOut("b0", "agent", "Hi.", True, T0 + dt.timedelta(seconds=7))]
    tiles[0].fulfill(
        body=tile.format(pk="c2", panel=panel_html(second, pk="c2", compact=True)),
        content_type="text/html",
    )
    page.wait_for_function("() => fake.sessions.length === 2")
    stream(page, "c2", "b2", "user", "Hi back.", at(9))
    stream(page, "c2", "b2", "user", "Hi back.", at(9))
    assert lines(page, "[data-wall-tile='c2']") == [
        ("agent", "b0", "Hi.", True),
        ("agent", "b1", "Hello, second call.", True),
        ("user", "b2", "Hi back.", True),
    ]
    assert len(lines(page, "[data-wall-tile='c1']")) == 3  # the other call's lines stay there
    assert observed.page_errors == [], observed.page_errors
