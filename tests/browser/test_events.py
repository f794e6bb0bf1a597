"""The conversation event stream's script (``static/anyreach_listen/events.js``), its
template tag and its websocket path from ``anyreach_listen.routing``.

The browser tests serve the real script on the embedding site and play the server
with Playwright's websocket routing; ``page.clock`` drives the reconnect delays.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
from django.template import Context, Template
from django.urls.resolvers import RegexPattern, URLResolver
from playwright.sync_api import Page, WebSocketRoute

from anyreach_listen.consumers import ConversationEventsConsumer
from anyreach_listen.routing import events_path, websocket_urlpatterns
from tests.browser.conftest import Observed
from tests.browser.pages import EmbeddingSite
from tests.support.processes import ROOT, wait_until

EVENTS_JS = ROOT / "anyreach_listen" / "static" / "anyreach_listen" / "events.js"
PATH = "/ws/listen/events/"


# ---- the path and the template tags (no browser) ----


def test_events_path_is_derived_from_the_consumer_route() -> None:
    assert events_path() == PATH
    match = URLResolver(RegexPattern(r"^/"), websocket_urlpatterns).resolve(events_path())
    assert getattr(match.func, "consumer_class", None) is ConversationEventsConsumer


class Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append(dict(attrs))


def scripts(template: str) -> list[dict[str, str | None]]:
    parser = Scripts()
    parser.feed(Template("{% load anyreach_listen %}" + template).render(Context()))
    return parser.scripts


def test_listen_events_script_carries_the_websocket_path() -> None:
    [tag] = scripts("{% listen_events_script %}")
    assert (tag["src"] or "").endswith("/anyreach_listen/events.js")
    assert tag["data-arl-events-url"] == events_path()
    assert "defer" in tag


def test_listen_assets_start_the_event_stream_before_the_panel() -> None:
    srcs = [tag["src"] or "" for tag in scripts("{% listen_assets %}")]
    assert [s.rsplit("/", 1)[-1] for s in srcs] == ["listen-sdk", "events.js", "listen-panel.js"]


# ---- the script in Chromium ----

# Records the stream's DOM events and every websocket the page opens (wrapping
# whatever WebSocket the page has, Playwright's routed one included).
RECORDER = """<script>
window.seen = [];
for (const name of ["anyreach:conversation", "anyreach:alert", "anyreach:transcript",
                    "anyreach:guidance", "anyreach:stream-open", "anyreach:stream-closed"]) {
  document.addEventListener(name, (e) => seen.push([name.slice(9), e.detail]));
}
window.sockets = [];
const Native = window.WebSocket;
window.WebSocket = function (url) { sockets.push(String(url)); return new Native(url); };
document.addEventListener("DOMContentLoaded", () => {
  window.socketsBeforeDomReady = sockets.length;
});
</script>"""


class Server:
    """Plays the events websocket server through Playwright's routing. While
    ``accepting`` is false, connections go on to the embedding site, which is no
    websocket server: they fail before opening, like a server that is down."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.accepting = True
        self.accepted: list[WebSocketRoute] = []
        page.route_web_socket(re.compile(r".*/ws/listen/events/$"), self._route)

    def _route(self, ws: WebSocketRoute) -> None:
        if self.accepting:
            self.accepted.append(ws)
        else:
            ws.connect_to_server()

    def seen(self, name: str) -> int:
        return int(self.page.evaluate("(n) => seen.filter((e) => e[0] === n).length", name))

    def wait_seen(self, name: str, count: int) -> None:
        wait_until(lambda: self.seen(name) >= count, timeout=10, what=f"{count} x {name}")

    def opened(self, n: int) -> WebSocketRoute:
        """The n-th accepted connection (1-based), once the page saw it open."""
        self.wait_seen("stream-open", n)
        return self.accepted[n - 1]


def open_events_page(page: Page, site: EmbeddingSite, head: str, *, clock: bool = False) -> Server:
    site.add("/static/events.js", EVENTS_JS.read_text(), "text/javascript")
    server = Server(page)
    if clock:
        page.clock.install()
    page.goto(site.add("/events.html", f"<!doctype html><head>{RECORDER}{head}</head><body>"))
    return server


EVENTS_TAG = f'<script src="/static/events.js" data-arl-events-url="{PATH}" defer></script>'


def sockets(page: Page) -> list[str]:
    return list(page.evaluate("() => sockets"))


@pytest.mark.browser
def test_messages_become_dom_events(page: Page, site: EmbeddingSite, observed: Observed) -> None:
    server = open_events_page(page, site, EVENTS_TAG)
    ws = server.opened(1)
    assert sockets(page) == [f"ws://localhost:{site.port}{PATH}"]
    message = {"type": "conversation.updated", "conversation": {"id": "c1", "is_active": True}}
    ws.send("not json")  # ignored
    ws.send(json.dumps(message))
    server.wait_seen("conversation", 1)
    assert page.evaluate("() => seen") == [["stream-open", None], ["conversation", message]]
    assert observed.page_errors == []


@pytest.mark.browser
def test_alerts_transcript_lines_and_guidance_have_dom_events_of_their_own(
    page: Page, site: EmbeddingSite, observed: Observed
) -> None:
    server = open_events_page(page, site, EVENTS_TAG)
    ws = server.opened(1)
    conversation = {"id": "c1", "is_active": True}
    alert = {"type": "alert.raised", "conversation": conversation, "alert": {"id": "a"}}
    line = {"type": "transcript.segment", "conversation": conversation, "segment": {"id": "s"}}
    guidance = {
        "type": "guidance.updated",
        "event": "delivered",
        "conversation": conversation,
        "guidance": {"id": "g", "mode": "say", "text": "Hi", "status": "delivered"},
    }
    listener = {"type": "listener.updated", "conversation": conversation}
    for message in (alert, line, guidance, listener):
        ws.send(json.dumps(message))
    server.wait_seen("conversation", 1)
    # Guidance is no conversation change: pages that follow calls never see it.
    assert page.evaluate("() => seen") == [
        ["stream-open", None],
        ["alert", alert],
        ["transcript", line],
        ["guidance", guidance],
        ["conversation", listener],
    ]
    assert observed.page_errors == []


@pytest.mark.browser
def test_reconnect_waits_1_s_doubling_to_30_s_and_1_s_again_once_open(
    page: Page, site: EmbeddingSite
) -> None:
    server = open_events_page(page, site, EVENTS_TAG, clock=True)
    server.opened(1)
    # From here on only page.clock moves the page's timers.
    page.clock.pause_at(int(page.evaluate("() => Date.now()")) + 1_000)

    def next_attempt_after(delay: int) -> None:
        count = len(sockets(page))
        page.clock.run_for(delay - 1)
        assert len(sockets(page)) == count, f"reconnected before {delay} ms"
        page.clock.run_for(1)
        assert len(sockets(page)) == count + 1, f"did not reconnect after {delay} ms"

    server.accepting = False  # the server is down
    server.accepted[0].close(code=1011, reason="restarting")
    for closed, delay in enumerate([1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000], 1):
        server.wait_seen("stream-closed", closed)
        next_attempt_after(delay)
    server.accepting = True  # back up: the pending attempt opens
    server.wait_seen("stream-closed", 8)
    next_attempt_after(30_000)
    server.opened(2).close(code=1011)
    server.wait_seen("stream-closed", 9)
    next_attempt_after(1_000)  # the delay starts over after a successful open
    server.opened(3)


@pytest.mark.browser
def test_signed_out_close_4401_stops_reconnecting(page: Page, site: EmbeddingSite) -> None:
    server = open_events_page(page, site, EVENTS_TAG, clock=True)
    server.opened(1).close(code=4401, reason="signed out")
    server.wait_seen("stream-closed", 1)
    page.clock.run_for(120_000)
    assert len(sockets(page)) == 1
    assert page.evaluate("() => seen.map((e) => e[0])") == ["stream-open", "stream-closed"]


@pytest.mark.browser
def test_included_twice_one_stream(page: Page, site: EmbeddingSite) -> None:
    server = open_events_page(page, site, EVENTS_TAG + EVENTS_TAG)
    server.opened(1)
    page.wait_for_load_state("load")
    assert len(sockets(page)) == 1
    assert page.evaluate("() => window.AnyReachEvents.url") == f"ws://localhost:{site.port}{PATH}"


@pytest.mark.browser
def test_without_the_path_it_says_so_and_opens_nothing(
    page: Page, site: EmbeddingSite, observed: Observed
) -> None:
    open_events_page(page, site, '<script src="/static/events.js" defer></script>')
    page.wait_for_load_state("load")
    assert sockets(page) == []
    assert any("data-arl-events-url" in e for e in observed.console_errors), observed.console


def stream_state(page: Page) -> list[str]:
    """The stream's state as a late listener reads it: <html data-arl-stream> and
    ``AnyReachEvents.state``."""
    return list(
        page.evaluate(
            "() => [document.documentElement.dataset.arlStream, window.AnyReachEvents.state]"
        )
    )


@pytest.mark.browser
def test_the_stream_state_stays_on_the_page_for_late_listeners(
    page: Page, site: EmbeddingSite, observed: Observed
) -> None:
    server = open_events_page(page, site, EVENTS_TAG, clock=True)
    ws = server.opened(1)
    assert stream_state(page) == ["open", "open"]
    # Its listeners already read the new state when the event reaches them.
    page.evaluate(
        """() => document.addEventListener("anyreach:stream-closed",
             () => { window.stateWhenClosed = window.AnyReachEvents.state; })"""
    )
    ws.close(code=1011)
    server.wait_seen("stream-closed", 1)
    assert stream_state(page) == ["closed", "closed"]
    assert page.evaluate("() => window.stateWhenClosed") == "closed"
    page.clock.run_for(1_000)  # reconnects
    server.opened(2)
    assert stream_state(page) == ["open", "open"]
    assert observed.page_errors == []


@pytest.mark.browser
def test_it_connects_once_every_deferred_script_has_run(page: Page, site: EmbeddingSite) -> None:
    # Deferred scripts run one by one as each arrives, after the document was parsed:
    # a socket opened from the first could open before the next registered its listener.
    later = "<script src='/static/later.js' defer></script>"
    site.add("/static/later.js", "window.laterRan = true;", "text/javascript")
    server = open_events_page(page, site, EVENTS_TAG + later)
    server.opened(1)
    assert page.evaluate("() => [window.laterRan, window.socketsBeforeDomReady]") == [True, 0]
    assert len(sockets(page)) == 1


@pytest.mark.browser
def test_on_open_and_on_closed_run_now_for_the_state_then_on_every_later_event(
    page: Page, site: EmbeddingSite, observed: Observed
) -> None:
    server = open_events_page(page, site, EVENTS_TAG, clock=True)
    server.opened(1)
    # A script that starts after the open: its fn runs at once, the closed one waits.
    page.evaluate(
        """() => {
          window.calls = [];
          AnyReachEvents.onOpen(() => calls.push("open"));
          AnyReachEvents.onClosed(() => calls.push("closed"));
        }"""
    )
    assert page.evaluate("() => calls") == ["open"]
    server.accepted[0].close(code=1011)
    server.wait_seen("stream-closed", 1)
    page.clock.run_for(1_000)  # reconnects
    server.opened(2)
    assert page.evaluate("() => calls") == ["open", "closed", "open"]
    assert observed.page_errors == []
