"""Security scenarios: forged and malformed messages, a second init, the token
never in a URL, and the browser refusing the frame for origins not allowed."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Frame, Page

from tests.browser.conftest import (
    Observed,
    SdkHost,
    fake,
    listen_frame,
    make_token,
    sdk_host_server,
)
from tests.browser.pages import EmbeddingSite, sdk_page
from tests.browser.test_contract import create, log, settled, wait_connects

pytestmark = pytest.mark.browser

FORGED = json.dumps(
    {
        "type": "event",
        "name": "transcript",
        "data": {"id": "forged", "role": "agent", "text": "forged", "final": True},
    }
)


def page_with_attacker(page: Page, site: EmbeddingSite, sdk_host: SdkHost) -> Frame:
    """The embedding page plus an iframe from a third origin, returned as the attacker."""
    site.add("/attacker.html", "<!doctype html><title>attacker</title>")
    body = f"<iframe id='attacker' src='{site.other_origin}/attacker.html'></iframe>"
    page.goto(site.add("/embed.html", sdk_page(sdk_host.sdk_url, body)))
    page.wait_for_function("() => window.AnyReach && window.listenTest")
    handle = page.locator("#attacker").element_handle()
    attacker = handle.content_frame()
    assert attacker is not None
    attacker.wait_for_load_state()
    assert attacker.evaluate("() => location.origin") == site.other_origin
    return attacker


@dataclass(frozen=True)
class Scenario:
    name: str
    where: str  # "page" (the embedding page) or "attacker" (a third-origin sibling frame)
    script: str  # JS run there once the session's frame is up; `listen` is the listen frame
    ignored_by_frame: str | None  # what the frame's observer must record, if it sees it


READY = "{protocol: 'anyreach-listen', version: 1, type: 'ready'}"
INIT = "{protocol: 'anyreach-listen', version: 1, type: 'init'}"
LISTEN = "document.querySelector('iframe[src$=\"/public/listen\"]').contentWindow"
SIBLING_LISTEN = "[...Array(parent.frames.length).keys()].map((i) => parent.frames[i])"

SCENARIOS = [
    Scenario(
        "page forges frame events to itself",
        "page",
        f"window.postMessage({READY}, '*'); window.postMessage({FORGED}, '*')",
        None,
    ),
    Scenario(
        "third-origin frame forges ready and events to the page",
        "attacker",
        f"parent.postMessage({READY}, '*'); parent.postMessage({FORGED}, '*')",
        None,
    ),
    Scenario(
        "third-origin frame sends init with its own port to the listen frame",
        "attacker",
        f"for (const w of {SIBLING_LISTEN}) {{ const c = new MessageChannel();"
        f" w.postMessage({INIT}, '*', [c.port2]); c.port1.postMessage({{type: 'command', id: 1,"
        " name: 'connect', args: {}});}",
        "message from a window other than the parent",
    ),
    Scenario(
        "parent posts malformed messages to the listen frame",
        "page",
        f"const w = {LISTEN}; for (const m of [null, 'init', 42, [], {{}},"
        " {protocol: 'other', version: 1, type: 'init'}, {protocol: 'anyreach-listen'},"
        f" {INIT}]) w.postMessage(m, '*');"
        " const c = new MessageChannel(), d = new MessageChannel();"
        f" w.postMessage({INIT}, '*', [c.port2, d.port2]);",
        "malformed message from the parent",
    ),
    Scenario(
        "parent sends a second init",
        "page",
        f"const c = new MessageChannel(); {LISTEN}.postMessage({INIT}, '*', [c.port2]);"
        " c.port1.onmessage = (e) => { window.hijacked = e.data; };"
        " c.port1.postMessage({type: 'command', id: 1, name: 'setMuted', args: {muted: true}});",
        "second init",
    ),
    Scenario(
        "parent sends commands outside the allow-list over a forged port",
        "page",
        f"const c = new MessageChannel(); {LISTEN}.postMessage({INIT}, '*', [c.port2]);"
        " for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty'])"
        " c.port1.postMessage({type: 'command', id: 2, name, args: {}});",
        "second init",
    ),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_forged_and_malformed_messages_are_ignored(
    page: Page, site: EmbeddingSite, sdk_host: SdkHost, observed: Observed, scenario: Scenario
) -> None:
    attacker = page_with_attacker(page, site, sdk_host)
    create(page, sdk_host, "manual")
    page.evaluate("() => { listenTest.connect(0); }")
    frame = listen_frame(page)
    frame.wait_for_function("() => window.__anyreachFake.calls.includes('connect')", polling=50)
    target = page if scenario.where == "page" else attacker
    target.evaluate(f"() => {{ {scenario.script} }}")
    if scenario.ignored_by_frame:
        frame.wait_for_function(
            "(what) => window.__anyreachFake.ignored.includes(what)",
            arg=scenario.ignored_by_frame,
            polling=50,
        )
    # The real session is unaffected: it connects, and only real events arrive.
    fake(frame, "(f) => f.completeConnect()")
    wait_connects(page, 0, ["resolved"])
    fake(frame, "(f) => f.segments('agent', true, [{id: 'real', text: 'real', final: true}])")
    page.wait_for_function("() => listenTest.log(0, 'transcript').length === 1")
    assert [t["id"] for t in log(page, 0, "transcript")] == ["real"]
    assert fake(frame, "(f) => f.calls") == ["connect"]
    assert fake(frame, "(f) => f.ignored.filter((w) => w === 'init').length") == 1
    assert page.evaluate("() => window.hijacked === undefined")
    assert page.evaluate("() => listenTest.sessions[0].session.isMuted()") is False
    assert fake(frame, "(f) => (f.addAudioTrack(), f.audioMuted())") == [False]
    assert observed.page_errors == []


def test_token_never_appears_in_any_url(
    page: Page, site: EmbeddingSite, sdk_host: SdkHost, observed: Observed
) -> None:
    token = make_token(identity="listener-secret-identity")
    page.goto(site.add("/embed.html", sdk_page(sdk_host.sdk_url)))
    page.wait_for_function("() => window.AnyReach && window.listenTest")
    create(page, sdk_host, "auto", token=token)
    page.evaluate("() => listenTest.connect(0)")
    frame = listen_frame(page)
    assert frame.url == sdk_host.frame_url
    assert page.locator("iframe").get_attribute("src") == sdk_host.frame_url
    page.evaluate("() => listenTest.sessions[0].session.end()")
    assert observed.requests, "requests were recorded"
    assert sdk_host.frame_url in observed.requests
    for url in observed.requests:
        assert token not in url
        assert token.split(".")[1] not in url and "listener-secret-identity" not in url


@pytest.fixture(scope="module")
def restricted_host(
    built_js: None, site: EmbeddingSite, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SdkHost]:
    """An SDK host whose EMBED_ORIGINS allows only the embedding site's localhost origin."""
    with sdk_host_server(tmp_path_factory.mktemp("restricted"), embed_origins=[site.origin]) as h:
        yield h


@pytest.mark.parametrize(
    ("origin_kind", "allowed"), [("listed origin", True), ("unlisted origin", False)]
)
def test_browser_refuses_the_frame_for_origins_not_allowed(
    page: Page,
    site: EmbeddingSite,
    restricted_host: SdkHost,
    observed: Observed,
    origin_kind: str,
    allowed: bool,
) -> None:
    origin = site.origin if allowed else site.other_origin
    site.add("/restricted.html", sdk_page(restricted_host.sdk_url))
    page.goto(f"{origin}/restricted.html")
    page.wait_for_function("() => window.AnyReach && window.listenTest")
    create(page, restricted_host, "auto")
    page.evaluate("() => { listenTest.connect(0); }")
    [outcome] = settled(page)
    if allowed:
        assert outcome == "resolved"
        return
    assert "did not start" in outcome and "EMBED_ORIGINS" in outcome
    [error] = log(page, 0, "error")
    assert origin in error["message"]
    assert any("frame-ancestors" in message for message in observed.console_errors)
    with contextlib.suppress(Exception):
        page.evaluate("() => listenTest.sessions[0].session.end()")


# Runs in every document of the context (the listen frame included) before its
# scripts: records, as JSON, every message a window receives (a cross-origin
# window's postMessage cannot be wrapped by its caller) and every message posted
# on a MessagePort.
MESSAGE_RECORDER_JS = """
(() => {
  if (Object.prototype.hasOwnProperty.call(window, "__posted")) return;
  const posted = [];
  Object.defineProperty(window, "__posted", { value: posted });
  const record = (data) => {
    try { posted.push(JSON.stringify(data)); } catch (e) { posted.push(String(data)); }
  };
  window.addEventListener("message", (event) => record(event.data), true);
  const portPost = MessagePort.prototype.postMessage;
  MessagePort.prototype.postMessage = function (data, ...rest) {
    record(data);
    return portPost.call(this, data, ...rest);
  };
})();
"""


def test_the_token_crosses_to_the_frame_only_with_connect(
    page: Page, site: EmbeddingSite, sdk_host: SdkHost, observed: Observed
) -> None:
    """The frame loads and warms up at listen(); the token travels only with connect()."""
    page.context.add_init_script(MESSAGE_RECORDER_JS)
    token = make_token(identity="listener-secret-identity")
    secrets = [token, token.split(".")[1], "listener-secret-identity"]
    page.goto(site.add("/embed.html", sdk_page(sdk_host.sdk_url)))
    page.wait_for_function("() => window.AnyReach && window.listenTest")
    create(page, sdk_host, "auto", token=token)
    frame = listen_frame(page)
    frame.wait_for_function("() => window.__anyreachFake.ignored.includes('init')", polling=50)
    frame.wait_for_function("() => window.__anyreachFake.prepared.length === 1", polling=50)

    def seen() -> list[str]:
        texts: list[str] = page.evaluate("() => window.__posted")
        texts += frame.evaluate("() => window.__posted")
        return texts + list(observed.requests) + [frame.url, page.url]

    before = seen()
    # The recorder works: it saw both handshake messages.
    assert any('"type":"ready"' in text for text in before), before
    assert any('"type":"init"' in text for text in before), before
    assert [text for text in before if any(s in text for s in secrets)] == []
    assert fake(frame, "(f) => f.prepared") == [sdk_host.livekit_url]

    page.evaluate("() => listenTest.connect(0)")
    wait_connects(page, 0, ["resolved"])
    # It does cross now, once, in the connect command over the port.
    carrying = [text for text in seen() if token in text]
    assert len(carrying) == 1 and '"name":"connect"' in carrying[0], carrying
    for url in observed.requests:
        assert not any(s in url for s in secrets), url
