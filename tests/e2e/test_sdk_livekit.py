"""The real SDK in real Chromium, against a real livekit-server and a simulated call.

The embedding page and the SDK's hidden frame are on different origins as in production,
and the page gets its token from the embedder's "backend", minted through the real API.
Audio, both roles' transcripts and the call's end reach the page through the frame; an
expired token fails with a clear error and a revoked key's listener is removed. Three
tests share one listener on one call; the others have calls of their own.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from livekit import api
from playwright.sync_api import Browser, BrowserContext, Page, expect

from anyreach_listen.listening.minting import listener_grants
from demo.call_simulator import DEFAULT_SCRIPT
from tests.browser.pages import EmbeddingSite
from tests.e2e.sdk_pages import (
    RTC_HOOK_JS,
    InboundAudio,
    audio_elements,
    connects,
    inbound_audio,
    listen_frame,
    log,
    open_listener_page,
)
from tests.support.processes import wait_until
from tests.support.stack import Call, Stack, simulated_call

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

READ_SCOPE = "conversations:read_sensitive"
CONNECT_TIMEOUT = 20  # the SDK's own connect timeout is 15 s
CALL_END_TIMEOUT = 120


def _identity(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


def _wait_connected(page: Page) -> None:
    wait_until(lambda: connects(page) != ["pending"], timeout=CONNECT_TIMEOUT, what="connect()")
    assert connects(page) == ["resolved"], (connects(page), log(page))


def _wait_ended(page: Page, timeout: float) -> None:
    wait_until(lambda: log(page, "ended"), timeout=timeout, what="the ended event")


@pytest.fixture(scope="module")
def embedder() -> Iterator[EmbeddingSite]:
    with EmbeddingSite().running() as site:
        yield site


def uncaught_errors(context: BrowserContext) -> list[str]:
    """Uncaught errors of every page and frame of ``context`` from now on."""
    errors: list[str] = []
    context.on("weberror", lambda error: errors.append(str(error.error)))
    return errors


def _new_context(browser: Browser) -> BrowserContext:
    context = browser.new_context()
    context.set_default_timeout(30_000)
    context.add_init_script(RTC_HOOK_JS)
    return context


@dataclass
class Live:
    """One SDK listener on one simulated call, shared by the tests that observe it."""

    stack: Stack
    call: Call
    grant: dict[str, Any]
    page: Page
    page_errors: list[str]

    def finished(self) -> dict[str, Any]:
        """Wait for the call to end and the SDK session to end; the call's report."""
        assert self.call.wait(timeout=CALL_END_TIMEOUT) == 0, self.call.log()
        _wait_ended(self.page, timeout=30)
        return self.call.report()


@pytest.fixture(scope="module")
def live(stack: Stack, browser: Browser, embedder: EmbeddingSite) -> Iterator[Live]:
    # --duration: long enough for the audio test to run while the call is live.
    with simulated_call(stack, "--duration", "20") as call:
        response = stack.mint(call.conversation_id, stack.seed["api_keys"]["read_sensitive"])
        assert response.status_code == 200, response.text
        grant = response.json()
        context = _new_context(browser)
        try:
            errors = uncaught_errors(context)
            page = open_listener_page(
                context, embedder, f"{stack.base_url}/public/listen-sdk", grant
            )
            yield Live(stack, call, grant, page, errors)
        finally:
            context.close()


def test_audio_arrives_in_the_frame_and_mute_is_local(live: Live) -> None:
    page = live.page
    _wait_connected(page)
    page.click("#play")  # the user gesture: startAudio()
    frame = listen_frame(page)
    assert frame.evaluate("() => location.origin") == live.stack.base_url
    assert page.evaluate("() => location.origin") != live.stack.base_url

    # Real audio: RTP bytes flowing and a non-zero level on the inbound audio.
    def playing() -> InboundAudio | None:
        audio = inbound_audio(frame)
        return audio if audio.bytes > 0 and audio.level > 0 else None

    heard = wait_until(playing, timeout=20, what="inbound audio with a level above zero")
    print(f"inbound audio: {heard}")
    assert heard.streams >= 1
    wait_until(lambda: len(audio_elements(frame)) >= 2, timeout=10, what="agent and caller audio")
    assert not any(a["muted"] for a in audio_elements(frame)), audio_elements(frame)
    assert all(a["hasStream"] and not a["paused"] for a in audio_elements(frame))

    # mute(): every audio element in the frame is silenced...
    transcripts_before = len(log(page, "transcript"))
    page.evaluate("() => listenTest.sessions[0].session.mute()")
    assert page.evaluate("() => listenTest.sessions[0].session.isMuted()") is True
    wait_until(
        lambda: all(a["muted"] or a["volume"] == 0 for a in audio_elements(frame)),
        timeout=5,
        what="every audio element muted",
    )
    # ...while the call goes on: RTP keeps arriving and transcripts keep coming.
    before = inbound_audio(frame).bytes
    grown = wait_until(
        lambda: (b := inbound_audio(frame).bytes) > before + 2000 and b,
        timeout=10,
        what="inbound bytes growing while muted",
    )
    print(f"while muted: inbound bytes {before} -> {grown}")
    wait_until(
        lambda: len(log(page, "transcript")) > transcripts_before,
        timeout=10,
        what="transcripts while muted",
    )
    elements = audio_elements(frame)
    assert elements and all(a["muted"] or a["volume"] == 0 for a in elements), elements
    assert live.call.proc.poll() is None, "the call stopped while the listener was muted"
    assert page.evaluate("() => listenTest.sessions[0].session.getState()") == "connected"

    # unmute() restores the output.
    page.evaluate("() => listenTest.sessions[0].session.unmute()")
    assert page.evaluate("() => listenTest.sessions[0].session.isMuted()") is False
    wait_until(
        lambda: all(not a["muted"] and a["volume"] > 0 for a in audio_elements(frame)),
        timeout=5,
        what="every audio element unmuted",
    )
    wait_until(playing, timeout=10, what="audio level above zero after unmute")
    assert not log(page, "error"), log(page, "error")


def _expected_order(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(segment id, role, text) of every turn the call spoke, in order."""
    counters: dict[str, Iterator[int]] = defaultdict(itertools.count)
    order: list[tuple[str, str, str]] = []
    for index in range(report["turns"]):
        turn = DEFAULT_SCRIPT[index % len(DEFAULT_SCRIPT)]
        nth = next(counters[turn.role])
        order.append((report["segments"][turn.role][nth], turn.role, turn.text))
    return order


def test_transcripts_for_both_roles_interim_then_final_once_in_order(live: Live) -> None:
    page = live.page
    _wait_connected(page)
    report = live.finished()
    assert log(page, "stateChange")[:2] == ["connecting", "connected"]
    names = [name for name, _ in log(page)]
    assert names.index("stateChange", 1) < names.index("transcript"), names[:5]
    events: list[dict[str, Any]] = log(page, "transcript")
    expected = _expected_order(report)
    roles = {sid: role for sid, role, _ in expected}
    texts = {sid: text for sid, _, text in expected}

    by_segment: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        assert set(event) == {"id", "role", "text", "final"}, event
        by_segment[event["id"]].append(event)
    assert set(by_segment) <= set(roles), (set(by_segment) - set(roles), roles)

    with_interim = {"agent": 0, "user": 0}
    for sid, updates in by_segment.items():
        assert {u["role"] for u in updates} == {roles[sid]}, (sid, updates)
        finals = [u for u in updates if u["final"]]
        assert len(finals) == 1, (sid, updates)
        assert updates[-1]["final"], f"{sid}: an update came after its final: {updates}"
        assert finals[0]["text"] == texts[sid], (sid, finals[0], texts[sid])
        seen = [u["text"] for u in updates]
        assert all(b.startswith(a) for a, b in itertools.pairwise(seen)), (sid, seen)
        interims = [u["text"] for u in updates if not u["final"]]
        assert len(interims) == len(set(interims)), f"{sid}: an interim was repeated: {seen}"
        if len(updates) > 1:
            with_interim[roles[sid]] += 1
    assert with_interim["agent"] >= 1 and with_interim["user"] >= 1, with_interim

    # Finals in the order spoken: every turn after the listener joined, none missing.
    finals_order = [e["id"] for e in events if e["final"]]
    assert finals_order == [sid for sid, _, _ in expected][-len(finals_order) :], (
        finals_order,
        expected,
    )
    assert len(finals_order) >= len(expected) - 1, (finals_order, expected)
    # A segment's updates are contiguous: the next turn starts after the previous final.
    first_seen = list(dict.fromkeys(e["id"] for e in events))
    assert first_seen == finals_order, (first_seen, finals_order)
    print(
        f"transcripts: {len(events)} events, {len(finals_order)}/{len(expected)} segments, "
        f"first after {page.evaluate('() => timing.firstTranscript'):.0f} ms "
        f"(connected after {page.evaluate('() => timing.connected'):.0f} ms)"
    )


def test_agent_leaves_then_the_session_disconnects_and_ends(live: Live) -> None:
    page = live.page
    _wait_connected(page)
    report = live.finished()
    expect(page.locator("iframe")).to_have_count(0)
    names = [name for name, _ in log(page) if name != "transcript"]
    assert log(page, "agentDisconnected") == [{"participantIdentity": report["agent_identity"]}]
    assert log(page, "stateChange") == ["connecting", "connected", "disconnected"]
    assert names.count("ended") == 1
    assert names.index("agentDisconnected") < names.index("stateChange", 2) < names.index("ended")
    assert names[-1] == "ended", names
    assert not log(page, "error"), log(page, "error")
    assert page.evaluate("() => listenTest.sessions[0].session.getState()") == "disconnected"
    assert live.page_errors == []

    # Hidden from both sides of the call; the audit has real listening times.
    identity = _identity(live.grant["token"])
    assert identity not in report["seen_by_agent"] + report["seen_by_caller"]

    def session_times() -> dict[str, Any] | None:
        rows = live.stack.query(
            "SELECT joined_at, left_at FROM anyreach_listen_listensession "
            "WHERE listener_identity = ?",
            identity,
        )
        return dict(rows[0]) if rows and rows[0]["joined_at"] and rows[0]["left_at"] else None

    times = wait_until(session_times, timeout=10, what="joined_at and left_at")
    assert str(times["joined_at"]) < str(times["left_at"])


def test_listen_warms_the_real_frame_and_the_token_waits_for_connect(
    stack: Stack, browser: Browser, embedder: EmbeddingSite
) -> None:
    """listen() loads the production frame, which warms its LiveKit connection with a
    token-less HEAD request; nothing connects (no peer connection) until connect()."""
    context = _new_context(browser)
    requests: list[tuple[str, str]] = []
    context.on("request", lambda request: requests.append((request.method, request.url)))
    try:
        with simulated_call(stack, "--duration", "5") as call:
            response = stack.mint(call.conversation_id, stack.seed["api_keys"]["read_sensitive"])
            assert response.status_code == 200, response.text
            grant = response.json()
            sdk_url = f"{stack.base_url}/public/listen-sdk"
            page = open_listener_page(context, embedder, sdk_url, grant, connect=False)
            frame = listen_frame(page)
            livekit_http = stack.livekit.http_url.rstrip("/") + "/"
            # Asked of the frame itself: every evaluate() also lets Playwright's sync
            # API deliver the request events recorded above.
            wait_until(
                lambda: frame.evaluate(
                    "(u) => performance.getEntriesByType('resource').some((e) => e.name === u)",
                    livekit_http,
                ),
                timeout=CONNECT_TIMEOUT,
                what=f"the frame's request to {livekit_http}",
            )
            assert ("HEAD", livekit_http) in requests, requests
            assert page.evaluate("() => listenTest.sessions[0].session.getState()") == "idle"
            assert frame.evaluate("() => window.__testPeers.length") == 0
            assert log(page) == []
            secrets = [grant["token"], *grant["token"].split(".")[1:]]
            leaked = [url for _, url in requests if any(s in url for s in secrets)]
            assert leaked == []

            page.evaluate("() => { listenTest.connect(0); }")
            _wait_connected(page)
            assert frame.evaluate("() => window.__testPeers.length") >= 1
            assert log(page, "stateChange") == ["connecting", "connected"]
    finally:
        context.close()


# The stack's LiveKit runs --dev with the 6-byte secret "secret".
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_expired_token_rejects_connect_with_a_clear_error_without_the_jwt(
    stack: Stack, context: BrowserContext, embedder: EmbeddingSite
) -> None:
    uncaught = uncaught_errors(context)
    with simulated_call(stack, "--duration", "3") as call:
        expired = (
            api.AccessToken(stack.env["LIVEKIT_API_KEY"], stack.env["LIVEKIT_API_SECRET"])
            .with_identity(f"listener-{uuid.uuid4()}")
            .with_grants(listener_grants(call.room_name))
            .with_metadata(json.dumps({"listener": True, "embed_origins": []}))
            .with_ttl(dt.timedelta(seconds=-120))  # beyond the server's leeway
            .to_jwt()
        )
        grant = {"url": stack.env["LIVEKIT_URL"], "token": expired}
        page = open_listener_page(context, embedder, f"{stack.base_url}/public/listen-sdk", grant)
        wait_until(lambda: connects(page) != ["pending"], timeout=CONNECT_TIMEOUT, what="connect")
        outcome = connects(page)
        errors = log(page, "error")
    assert len(outcome) == 1 and outcome[0].startswith("rejected: "), outcome
    assert len(errors) == 1, errors
    message = errors[0]["message"]
    assert outcome[0] == f"rejected: {message}"
    print(f"expired token: {message}")
    assert message.startswith("AnyReach: ")
    assert "token" in message and "Mint a new token" in message, message
    assert log(page, "stateChange") == ["connecting", "disconnected"]
    assert not log(page, "ended")
    assert uncaught == []
    # LiveKit's raw 401 text echoes the whole token: none of it may reach the page.
    for text in (message, outcome[0]):
        for part in expired.split("."):
            assert part not in text, f"a part of the JWT reached the page: {text}"
        assert "eyJ" not in text, text


def test_revoking_the_api_key_removes_the_sdk_listener(
    stack: Stack, context: BrowserContext, embedder: EmbeddingSite
) -> None:
    name = f"sdk-revoke-{uuid.uuid4().hex[:6]}"
    key = stack.manage("create_api_key", "demo", "--name", name, "--scope", READ_SCOPE).strip()
    uncaught = uncaught_errors(context)
    with simulated_call(stack, "--loop") as call:
        response = stack.mint(call.conversation_id, key)
        assert response.status_code == 200, response.text
        page = open_listener_page(
            context, embedder, f"{stack.base_url}/public/listen-sdk", response.json()
        )
        _wait_connected(page)
        wait_until(lambda: log(page, "transcript"), timeout=30, what="a transcript")
        revoke = (
            "import json, time\n"
            "from anyreach_listen.models import ApiKey\n"
            "from anyreach_listen.listening.revocation import revoke_credential\n"
            f"sessions = revoke_credential(ApiKey.objects.get(name={name!r}))\n"
            "print(json.dumps({'end': time.time(), 'revoked': len(sessions)}))\n"
        )
        done = json.loads(stack.manage("shell", "-v", "0", "-c", revoke).strip().splitlines()[-1])
        assert done["revoked"] == 1
        _wait_ended(page, timeout=10)
        latency = time.time() - done["end"]
        print(f"SDK listener ended {latency:.2f}s after revoke_credential returned")
        assert call.proc.poll() is None, "the call stopped"
    expect(page.locator("iframe")).to_have_count(0)
    # The state may go disconnected before or after the error; ended comes last, once.
    names = [name for name, _ in log(page) if name != "transcript"]
    assert log(page, "stateChange") == ["connecting", "connected", "disconnected"], names
    assert names.count("ended") == 1 and names[-1] == "ended", names
    errors = log(page, "error")
    assert len(errors) == 1 and "revoked" in errors[0]["message"], errors
    print(f"revoked: {errors[0]['message']}")
    assert uncaught == []
