"""Faults a listener meets for real: LiveKit dying mid-session, the frame's host down or
the frame blocked, end() while connecting, a page that navigates away.

These tests kill and restart LiveKit, so they run on a stack of their own (not
the session's shared one): real livekit-server, daphne, simulated calls, the
real SDK and frame in Chromium on another origin.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.browser.pages import EmbeddingSite, sdk_page
from tests.e2e.sdk_pages import RTC_HOOK_JS, connects, log, open_listener_page
from tests.support.processes import ROOT, wait_until
from tests.support.stack import Stack, running_stack, simulated_call

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SDK_BUNDLE = ROOT / "anyreach_listen" / "static" / "anyreach_listen" / "listen-sdk.js"

# Runs in every document of the context (the cross-origin frame included): reports
# unhandled rejections and uncaught errors to the test, even from a frame that is
# gone by the time the test looks.
FAULT_RECORDER_JS = """
(() => {
  const report = (what) => {
    try { window.__reportFault(location.href + ": " + what); } catch (e) {}
  };
  window.addEventListener("unhandledrejection", (event) => {
    const reason = event.reason;
    report("unhandledrejection: " + (reason && reason.message ? reason.message : String(reason)));
  });
  window.addEventListener("error", (event) => report("error: " + event.message));
})();
"""

# A second session in a page whose first one ended: a grant from the backend, connect().
NEW_SESSION_JS = """
async (grantPath) => {
  const { url, token } = await fetch(grantPath).then((r) => r.json());
  const i = listenTest.create({ url, token });
  listenTest.connect(i).catch(() => {});
  return i;
}
"""


class SilentServer:
    """Accepts TCP connections on 127.0.0.1:``port`` and never answers: a host that hangs.
    Remembers each connection's first line (``GET /rtc?...``)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.requests: list[str] = []
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            self.held.append(conn)
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                line = conn.recv(4096).split(b"\r\n", 1)[0]
                self.requests.append(line.decode(errors="replace"))

    def __enter__(self) -> SilentServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # close() alone leaves a socket blocked in accept() listening (Linux): wake it first.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for conn in self.held:
            conn.close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("faults")) as running:
        yield running


@pytest.fixture(scope="module")
def embedder() -> Iterator[EmbeddingSite]:
    with EmbeddingSite().running() as site:
        yield site


@pytest.fixture
def faults() -> list[str]:
    return []


@pytest.fixture
def fault_context(browser: Browser, faults: list[str]) -> Iterator[BrowserContext]:
    context = browser.new_context()
    context.set_default_timeout(20_000)
    context.add_init_script(RTC_HOOK_JS)
    context.expose_function("__reportFault", lambda what: faults.append(str(what)))
    context.add_init_script(FAULT_RECORDER_JS)
    context.on("weberror", lambda error: faults.append(f"weberror: {error.error}"))
    yield context
    context.close()


def _session_log(page: Page, index: int, name: str) -> list[Any]:
    result: list[Any] = page.evaluate("([i, n]) => listenTest.log(i, n)", [index, name])
    return result


def _session(page: Page, index: int) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(
        "(i) => ({ connects: listenTest.sessions[i].connects })", index
    )
    return result


def _grant(stack: Stack, conversation_id: str) -> dict[str, Any]:
    response = stack.mint(conversation_id, stack.seed["api_keys"]["read_sensitive"])
    assert response.status_code == 200, response.text
    grant: dict[str, Any] = response.json()
    return grant


def _probe_recorder(page: Page, faults: list[str]) -> None:
    """The recorder works in this page: an unhandled rejection reaches ``faults``."""
    page.evaluate("() => { Promise.reject(new Error('recorder probe')); }")
    # page.evaluate() also lets Playwright's sync API run the exposed function's calls.
    wait_until(
        lambda: page.evaluate("() => 0") == 0 and any("recorder probe" in f for f in faults),
        timeout=5,
        what="the probe",
    )
    faults.clear()


def test_livekit_killed_mid_session_then_restarted(
    fault_stack: Stack, fault_context: BrowserContext, embedder: EmbeddingSite, faults: list[str]
) -> None:
    stack, livekit = fault_stack, fault_stack.livekit.process
    assert livekit is not None
    sdk_url = f"{stack.base_url}/public/listen-sdk"
    with simulated_call(stack, "--loop") as call:
        grant = _grant(stack, call.conversation_id)
        page = open_listener_page(fault_context, embedder, sdk_url, grant)
        _probe_recorder(page, faults)
        wait_until(lambda: connects(page) == ["resolved"], timeout=20, what="connect()")
        wait_until(lambda: log(page, "transcript"), timeout=20, what="a transcript")

        livekit.kill()  # SIGKILL: a crash, nobody says goodbye
        killed = time.monotonic()
        wait_until(
            lambda: log(page, "error") and log(page, "stateChange")[-1] == "disconnected",
            timeout=20,
            what="an error and disconnected after LiveKit died",
        )
        print(f"error and disconnected {time.monotonic() - killed:.1f} s after the kill")
        wait_until(lambda: log(page, "ended"), timeout=5, what="ended")
        errors, states = log(page, "error"), log(page, "stateChange")
    assert states == ["connecting", "connected", "connecting", "disconnected"], states
    assert len(errors) == 1, errors
    message = errors[0]["message"]
    print(f"LiveKit died: {message}")
    assert message.startswith("AnyReach: lost the connection to the live conversation"), message
    assert "Start a new session" in message
    assert grant["token"].split(".")[1] not in message

    # LiveKit back on the same ports: a new session in the same page connects.
    livekit.start()
    with simulated_call(stack, "--duration", "10") as call:
        path = f"/backend/listener-token/{secrets.token_hex(8)}"
        embedder.add_json(path, _grant(stack, call.conversation_id))
        index = page.evaluate(NEW_SESSION_JS, path)
        wait_until(
            lambda: _session(page, index)["connects"] != ["pending"],
            timeout=20,
            what="the new session's connect()",
        )
        assert _session(page, index)["connects"] == ["resolved"]
        wait_until(
            lambda: _session_log(page, index, "transcript"), timeout=20, what="its transcript"
        )
    assert faults == [], faults


# Creates a session with the page's grant, connects, and reports how it settled.
CONNECT_OUTCOME_JS = """
async ([url, token]) => {
  const i = listenTest.create({ url, token });
  const t0 = performance.now();
  try {
    await listenTest.connect(i);
    return { ok: true, ms: performance.now() - t0, i };
  } catch (e) {
    return { ok: false, message: e.message, ms: performance.now() - t0, i };
  }
}
"""
# Any JWT-shaped token: the frame never gets as far as reading it.
SOME_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJsaXN0ZW5lci14In0.c2ln"


@pytest.mark.parametrize(
    "how",
    ["host down", "host not answering", "blocked by the page's CSP", "blocked on the network"],
)
def test_connect_rejects_when_the_frame_cannot_start(
    fault_stack: Stack,
    fault_context: BrowserContext,
    embedder: EmbeddingSite,
    faults: list[str],
    how: str,
) -> None:
    sdk_host = EmbeddingSite()
    sdk_url = f"{sdk_host.other_origin}/public/listen-sdk"
    sdk_host.add("/public/listen-sdk", SDK_BUNDLE.read_text(), "text/javascript")
    frame_url = sdk_url.removesuffix("-sdk")
    # No spare frame: the frame these faults stop is the one listen() injects.
    html = sdk_page(sdk_url, attrs='data-prewarm="off"')
    if how == "blocked by the page's CSP":
        csp = "<meta http-equiv='Content-Security-Policy' content=\"frame-src 'none'\">"
        html = html.replace("<head>", f"<head>{csp}")
    page = fault_context.new_page()
    if how == "blocked on the network":
        page.route(frame_url, lambda route: route.abort("blockedbyclient"))
    connect = [fault_stack.livekit.url, SOME_TOKEN]
    with sdk_host.running():
        page.goto(embedder.add(f"/faults-{secrets.token_hex(4)}.html", html))
        page.wait_for_function("() => window.AnyReach && window.listenTest")
        _probe_recorder(page, faults)
        if not how.startswith("host"):
            outcome = page.evaluate(CONNECT_OUTCOME_JS, connect)
    # The SDK is loaded; now its host is gone, or takes connections and never answers.
    if how == "host down":
        outcome = page.evaluate(CONNECT_OUTCOME_JS, connect)
    elif how == "host not answering":
        with SilentServer(sdk_host.port) as silent:
            outcome = page.evaluate(CONNECT_OUTCOME_JS, connect)
        assert any(r.startswith("GET /public/listen ") for r in silent.requests), silent.requests
    print(f"{how}: {outcome}")
    assert outcome["ok"] is False, outcome
    message = outcome["message"]
    assert message.startswith("AnyReach: "), message
    assert frame_url in message and "did not start" in message, message
    i = outcome["i"]
    assert _session_log(page, i, "error") == [{"message": message}]
    assert _session_log(page, i, "stateChange") == ["connecting", "disconnected"]
    assert faults == [], faults


# end() on session i: how long it took and what was left.
END_JS = """
async (i) => {
  const session = listenTest.sessions[i].session;
  const t0 = performance.now();
  await session.end();
  return {
    ms: performance.now() - t0,
    state: session.getState(),
    iframes: document.querySelectorAll("iframe").length,
  };
}
"""


def test_end_while_connecting_resolves_disconnected_and_leaves_nothing(
    fault_stack: Stack, fault_context: BrowserContext, embedder: EmbeddingSite, faults: list[str]
) -> None:
    """LiveKit hangs (it takes the connection and never answers): the frame is stuck
    connecting, and end() still resolves, disconnected, with its frame gone. The
    contract's 3 s bound is proven with a fake clock (tests/browser/test_contract.py)."""
    livekit = fault_stack.livekit.process
    assert livekit is not None
    livekit.kill()
    try:
        with SilentServer(livekit.config.port) as silent:
            page = fault_context.new_page()
            html = sdk_page(f"{fault_stack.base_url}/public/listen-sdk")
            page.goto(embedder.add(f"/end-{secrets.token_hex(4)}.html", html))
            page.wait_for_function("() => window.AnyReach && window.listenTest")
            _probe_recorder(page, faults)
            i = page.evaluate(
                "([url, token]) => {"
                "  const i = listenTest.create({ url, token }); listenTest.connect(i); return i; }",
                [fault_stack.livekit.url, SOME_TOKEN],
            )
            wait_until(
                lambda: any(r.startswith("GET /rtc") for r in silent.requests),
                timeout=10,
                what="the frame's LiveKit connection",
            )
            assert page.evaluate("(i) => listenTest.sessions[i].session.getState()", i) == (
                "connecting"
            )
            outcome = page.evaluate(END_JS, i)
            print(f"end() while connecting: {outcome}")
            assert outcome["state"] == "disconnected" and outcome["iframes"] == 0, outcome
            assert _session(page, i)["connects"] == [
                "rejected: AnyReach: the session was ended before it connected."
            ]
            assert _session_log(page, i, "ended") == [None]
            assert _session_log(page, i, "error") == []
    finally:
        livekit.start()
    assert faults == [], faults


def test_a_page_that_navigates_away_leaves_the_room(
    stack: Stack, fault_context: BrowserContext, embedder: EmbeddingSite
) -> None:
    """participant_left arrives for the listener (the webhook fills the audit's left_at)
    while the call goes on."""
    with simulated_call(stack, "--loop") as call:
        grant = _grant(stack, call.conversation_id)
        identity = jwt.decode(grant["token"], options={"verify_signature": False})["sub"]
        page = open_listener_page(
            fault_context, embedder, f"{stack.base_url}/public/listen-sdk", grant
        )
        wait_until(lambda: connects(page) == ["resolved"], timeout=20, what="connect()")

        def session() -> dict[str, Any] | None:
            rows = stack.query(
                "SELECT joined_at, left_at FROM anyreach_listen_listensession "
                "WHERE listener_identity = ?",
                identity,
            )
            return dict(rows[0]) if rows else None

        joined = wait_until(
            lambda: (row := session()) and row["joined_at"], timeout=10, what="joined_at"
        )
        assert session() == {"joined_at": joined, "left_at": None}
        page.goto("about:blank")
        left = time.monotonic()
        wait_until(lambda: (row := session()) and row["left_at"], timeout=20, what="left_at")
        print(f"left_at set {time.monotonic() - left:.1f} s after the page navigated away")
        assert call.proc.poll() is None, "the call ended: left_at may come from room_finished"
        status = stack.query(
            "SELECT status FROM anyreach_listen_conversation WHERE id = ?",
            call.conversation_id.replace("-", ""),
        )
        assert [row["status"] for row in status] == ["in_progress"]
    daphne_log = (stack.tmp / "daphne.log").read_text(errors="replace")
    assert f"LiveKit webhook participant_left room={call.room_name}: listener_left" in daphne_log
