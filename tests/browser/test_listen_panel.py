"""The listen panel's transcript list (``static/anyreach_listen/panel/listen-panel.js``) in
Chromium: a panel rendered with its recorded lines (``_transcript_lines.html`` inside the
real ``listen_panel.html``) adopts them, and live segments merge by role and segment id.

The SDK is a stand-in (``window.AnyReach.listen`` returning a session the test drives):
what is tested is the panel's list, not LiveKit.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.template.loader import render_to_string
from playwright.sync_api import Page, Route

from anyreach_listen.transcripts import SegmentOut
from tests.browser.fixtures import Observed
from tests.browser.pages import EmbeddingSite
from tests.support.processes import ROOT

PANEL_JS = ROOT / "anyreach_listen" / "static" / "anyreach_listen" / "panel" / "listen-panel.js"
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
      connect() { session.emit("stateChange", "connected"); return Promise.resolve(); },
      end() { return Promise.resolve(); },
    };
    fake.sessions.push(session);
    return session;
  },
};
"""


def panel_html(segments: list[SegmentOut]) -> str:
    conversation = SimpleNamespace(
        pk="c1", is_active=True, started_at=T0, caller_label="+1 555 0100", agent_label="Ava"
    )
    return render_to_string(
        "anyreach_listen/listen_panel.html",
        {
            "conversation": conversation,
            "can_listen": True,
            "token_url": TOKEN_PATH,
            "csrf_token": "x",
            "compact": False,
            "autoconnect": True,
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


def lines(page: Page) -> list[tuple[str, str, str, bool]]:
    result = page.evaluate(
        """() => [...document.querySelectorAll("[data-arl-transcript] .arl-line")].map((li) => [
          li.dataset.role, li.dataset.segmentId,
          li.querySelector(".arl-line__text").textContent, !li.classList.contains("is-interim"),
        ])"""
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
