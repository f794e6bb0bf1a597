"""The Session API and every event of the contract, in real Chromium, against the
frame's fake LiveKit adapter. The embedding page (localhost:P) and the SDK host
(127.0.0.1:Q) are different origins."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import Observed, SdkHost, fake, listen_frame, make_token
from tests.browser.pages import EmbeddingSite, sdk_page

pytestmark = pytest.mark.browser


def page_time(page: Page) -> int:
    """The page's clock now, in ms (``page.clock`` installed: it flows in real time)."""
    return int(page.evaluate("Date.now()"))


def pause_clock(page: Page, since: int) -> int:
    """Pause the page's clock and return the ms it ran since ``since``. From then on
    only ``run_for`` moves it, so a loaded machine cannot carry a timer past a check."""
    # Ahead of the clock, which runs on meanwhile: pause_at jumps there at once, and a
    # loaded machine once took more than 50 ms between the read and the pause.
    paused_at = page_time(page) + 250
    page.clock.pause_at(paused_at / 1000)  # Playwright for Python: seconds since the epoch
    ran = paused_at - since
    assert ran < 10_000, f"the clock ran {ran} ms before the test could pause it"
    return ran


@pytest.fixture(autouse=True)
def _no_uncaught_errors(observed: Observed) -> Iterator[None]:
    """No test leaves an uncaught error or unhandled rejection on the page (except the
    errors two tests throw on purpose)."""
    yield
    expected = ("handler bug", "boom in the frame")
    assert [e for e in observed.page_errors if not any(x in e for x in expected)] == []


def open_page(page: Page, site: EmbeddingSite, sdk_host: SdkHost, body: str = "") -> None:
    page.goto(site.add("/embed.html", sdk_page(sdk_host.sdk_url, body)))
    page.wait_for_function("() => window.AnyReach && window.listenTest")


def create(page: Page, sdk_host: SdkHost, mode: str = "manual", **kw: object) -> int:
    """A new session (listen()); its index."""
    return create_at(page, sdk_host, mode, **kw)[0]


def create_at(page: Page, sdk_host: SdkHost, mode: str = "manual", **kw: object) -> tuple[int, int]:
    """A new session (listen()): its index, and the page's clock (ms) when it was made."""
    token = kw.pop("token", None) or make_token()
    url = kw.pop("url", None) or sdk_host.fake_url(mode)
    index, now = page.evaluate(
        "([url, token]) => { const now = Date.now();"
        " return [listenTest.create({url, token}), now]; }",
        [url, token],
    )
    return int(index), int(now)


def connect(page: Page, index: int = 0) -> int:
    """Call the session's connect(); the page's clock (ms) when it was called."""
    return int(
        page.evaluate(
            "(i) => { const now = Date.now(); listenTest.connect(i); return now; }", index
        )
    )


def settled(page: Page, index: int = 0, count: int = 1) -> list[str]:
    """The outcomes of the session's connect() calls, once ``count`` have settled."""
    page.wait_for_function(
        "([i, n]) => !listenTest.sessions[i].connects.includes('pending')"
        " && listenTest.sessions[i].connects.length === n",
        arg=[index, count],
    )
    return list(page.evaluate("(i) => listenTest.sessions[i].connects", index))


def wait_connects(page: Page, index: int, expected: list[str]) -> None:
    assert settled(page, index, len(expected)) == expected


def log(page: Page, index: int = 0, name: str = "") -> list:
    return list(page.evaluate("([i, name]) => listenTest.log(i, name)", [index, name]))


def session_call(page: Page, expr: str, index: int = 0) -> object:
    return page.evaluate(
        f"(i) => {{ const s = listenTest.sessions[i].session; return {expr}; }}", index
    )


def connected_session(page: Page, site: EmbeddingSite, sdk_host: SdkHost):
    open_page(page, site, sdk_host)
    create(page, sdk_host, "auto")
    connect(page)
    wait_connects(page, 0, ["resolved"])
    return listen_frame(page)


def test_state_sequence_connect_resolves_once_connected(page: Page, site, sdk_host) -> None:
    open_page(page, site, sdk_host)
    create(page, sdk_host)
    assert session_call(page, "s.getState()") == "idle"
    connect(page)
    frame = listen_frame(page)
    page.wait_for_function("() => listenTest.sessions[0].session.getState() === 'connecting'")
    frame.wait_for_function("() => window.__anyreachFake.calls.includes('connect')", polling=50)
    assert page.evaluate("() => listenTest.sessions[0].connects") == ["pending"]
    fake(frame, "(f) => f.completeConnect()")
    wait_connects(page, 0, ["resolved"])
    assert log(page, 0, "stateChange") == ["connecting", "connected"]
    assert session_call(page, "s.getState()") == "connected"
    # Already connected: resolves at once, no second connection.
    connect(page)
    wait_connects(page, 0, ["resolved", "resolved"])
    assert fake(frame, "(f) => f.calls") == ["connect"]


def test_transcripts_that_arrive_while_connecting_follow_the_connected_state(
    page: Page, site, sdk_host
) -> None:
    open_page(page, site, sdk_host)
    create(page, sdk_host)
    connect(page)
    frame = listen_frame(page)
    frame.wait_for_function("() => window.__anyreachFake.calls.includes('connect')", polling=50)
    fake(frame, "(f) => f.segments('agent', true, [{id: 'early', text: 'Hi', final: false}])")
    fake(frame, "(f) => f.completeConnect()")
    wait_connects(page, 0, ["resolved"])
    page.wait_for_function("() => listenTest.log(0, 'transcript').length === 1")
    names = [name for name, _ in log(page, 0) if name in ("stateChange", "transcript")]
    assert names == ["stateChange", "stateChange", "transcript"]


def test_in_flight_connect_is_reused(page: Page, site, sdk_host) -> None:
    open_page(page, site, sdk_host)
    create(page, sdk_host)
    same = session_call(page, "s.connect() === s.connect()")
    assert same is True
    frame = listen_frame(page)
    fake(frame, "(f) => f.completeConnect()")
    page.wait_for_function("() => listenTest.sessions[0].session.getState() === 'connected'")
    assert fake(frame, "(f) => f.calls") == ["connect"]


def test_livekit_states_are_mapped(page: Page, site, sdk_host) -> None:
    frame = connected_session(page, site, sdk_host)
    for state in ["reconnecting", "connected", "signalReconnecting", "connected"]:
        fake(frame, "(f, s) => f.state(s)", state)
    page.wait_for_function("() => listenTest.log(0, 'stateChange').length === 6")
    assert log(page, 0, "stateChange") == [
        "connecting",
        "connected",
        "connecting",
        "connected",
        "connecting",
        "connected",
    ]


def test_connect_times_out_after_15_seconds(page: Page, site, sdk_host) -> None:
    page.clock.install()
    open_page(page, site, sdk_host)
    create(page, sdk_host, "manual")
    connected_at = connect(page)
    frame = listen_frame(page)
    frame.wait_for_function("() => window.__anyreachFake.calls.includes('connect')", polling=50)
    page.clock.run_for(14_000 - pause_clock(page, connected_at))
    assert page.evaluate("() => listenTest.sessions[0].connects") == ["pending"]
    page.clock.run_for(1_500)
    [outcome] = page.evaluate("() => listenTest.sessions[0].connects")
    page.clock.resume()
    assert outcome.startswith("rejected: AnyReach: timed out after 15 s")
    errors = log(page, 0, "error")
    assert len(errors) == 1 and errors[0]["message"] in outcome
    assert session_call(page, "s.getState()") == "disconnected"
    frame.wait_for_function("() => window.__anyreachFake.calls.includes('disconnect')", polling=50)


@pytest.mark.parametrize("how", ["fail-at-once", "fail-later"])
def test_error_rejects_connect(page: Page, site, sdk_host, how: str) -> None:
    open_page(page, site, sdk_host)
    message = "LiveKit refused the listener token"
    if how == "fail-at-once":
        create(page, sdk_host, url=sdk_host.fake_url("fail", message=message.replace(" ", "%20")))
        connect(page)
    else:
        create(page, sdk_host, "manual")
        connect(page)
        fake(listen_frame(page), "(f, m) => f.failConnect(m)", message)
    assert settled(page) == [f"rejected: {message}"]
    assert log(page, 0, "error") == [{"message": message}]
    assert session_call(page, "s.getState()") == "disconnected"
    # The session stays usable: a later connect() tries again.
    connect(page)
    frame = listen_frame(page)
    frame.wait_for_function(
        "() => window.__anyreachFake.calls.filter((c) => c === 'connect').length === 2",
        polling=50,
    )


def test_frame_failure_reaches_the_page_as_error(page: Page, site, sdk_host) -> None:
    frame = connected_session(page, site, sdk_host)
    fake(frame, "(f) => f.throwInFrame('boom in the frame')")
    page.wait_for_function("() => listenTest.log(0, 'error').length === 1")
    [error] = log(page, 0, "error")
    assert "listen frame failed" in error["message"] and "boom in the frame" in error["message"]


def test_end_is_idempotent_removes_iframe_and_fires_ended_once(page: Page, site, sdk_host) -> None:
    connected_session(page, site, sdk_host)
    same = page.evaluate(
        """async () => {
            const s = listenTest.sessions[0].session;
            const a = s.end(), b = s.end();
            await a;
            await s.end();
            return a === b;
        }"""
    )
    assert same is True
    assert page.locator("iframe").count() == 0
    assert log(page, 0, "ended") == [None]
    assert log(page, 0, "stateChange")[-1] == "disconnected"
    assert [e[0] for e in log(page)][-2:] == ["stateChange", "ended"]
    assert session_call(page, "s.getState()") == "disconnected"
    outcome = page.evaluate(
        "() => listenTest.sessions[0].session.connect().then(() => 'ok', (e) => e.message)"
    )
    assert "has ended" in outcome


def test_end_is_forced_after_3_seconds_when_the_frame_hangs(page: Page, site, sdk_host) -> None:
    page.clock.install()
    frame = connected_session(page, site, sdk_host)
    fake(frame, "(f) => { f.hangDisconnect = true; }")
    # The time read in the same task as end(), which starts the 3 s timer: a read of its
    # own came up to 100 ms before it on a loaded machine, and the check at 3.1 s failed.
    ended_at: int = page.evaluate(
        "() => { window.endDone = false; const now = Date.now();"
        " listenTest.sessions[0].session.end().then(() => { window.endDone = true; });"
        " return now; }"
    )
    frame.wait_for_function("() => window.__anyreachFake.calls.includes('disconnect')", polling=50)
    page.clock.run_for(2_500 - pause_clock(page, ended_at))
    assert page.evaluate("() => window.endDone") is False
    assert page.locator("iframe").count() == 1
    page.clock.run_for(600)
    assert page.evaluate("() => window.endDone") is True
    page.clock.resume()
    assert page.locator("iframe").count() == 0
    assert log(page, 0, "ended") == [None]


def test_end_while_connecting_rejects_connect(page: Page, site, sdk_host) -> None:
    open_page(page, site, sdk_host)
    create(page, sdk_host, "manual")
    connect(page)
    listen_frame(page)
    page.evaluate("() => listenTest.sessions[0].session.end()")
    [outcome] = settled(page)
    assert "ended before it connected" in outcome
    assert log(page, 0, "ended") == [None]


def test_the_session_chains_and_knows_the_contracts_events(page: Page, site, sdk_host) -> None:
    """The SDK's wiring of its emitter: the contract's event names, chaining, and listen()
    refusing options without a token. The emitter's own rules (off, a handler that is
    not a function, inherited names) are js/test/emitter.test.ts's."""
    open_page(page, site, sdk_host)
    result = page.evaluate(
        """(url) => {
            const s = AnyReach.listen({ url, token: "a.b.c" });
            const h = () => {};
            const chained = s.on("stateChange", h).on("error", () => {}).off("error", () => {});
            const off = s.off("stateChange", h);
            let unknown = null;
            try { s.on("transcripts", h); } catch (e) { unknown = [e.constructor.name, e.message]; }
            let badOptions = null;
            try { AnyReach.listen({ url }); }
            catch (e) { badOptions = [e.constructor.name, e.message]; }
            return { chained: chained === s, off: off === s, unknown, badOptions };
        }""",
        sdk_host.fake_url(),
    )
    assert result["chained"] and result["off"]
    assert result["unknown"][0] == "TypeError" and '"transcripts"' in result["unknown"][1]
    for name in ("stateChange", "transcript", "error", "ended", "agentDisconnected"):
        assert name in result["unknown"][1], name
    assert result["badOptions"][0] == "TypeError" and "listener-token" in result["badOptions"][1]


def test_a_throwing_handler_never_breaks_the_session(
    page: Page, site, sdk_host, observed: Observed
) -> None:
    open_page(page, site, sdk_host)
    create(page, sdk_host, "auto")
    page.evaluate(
        """() => listenTest.sessions[0].session.on("stateChange", () => {
            throw new Error("handler bug");
        })"""
    )
    # The exception is reported (asynchronously, as an uncaught error) ...
    with page.expect_event("pageerror", predicate=lambda error: "handler bug" in str(error)):
        connect(page)
        wait_connects(page, 0, ["resolved"])
    # ... and the session carried on regardless.
    assert log(page, 0, "stateChange") == ["connecting", "connected"]
    assert any("handler bug" in e for e in observed.page_errors)


def test_two_sessions_on_one_page_never_cross_talk(page: Page, site, sdk_host) -> None:
    open_page(page, site, sdk_host)
    create(page, sdk_host, "manual")
    create(page, sdk_host, "manual")
    connect(page, 0)
    first = listen_frame(page, 0)
    connect(page, 1)
    second = listen_frame(page, 1)
    fake(second, "(f) => f.completeConnect()")
    wait_connects(page, 1, ["resolved"])
    assert page.evaluate("() => listenTest.sessions[0].connects") == ["pending"]
    fake(first, "(f) => f.completeConnect()")
    wait_connects(page, 0, ["resolved"])
    fake(first, "(f) => f.segments('agent-1', true, [{id: 'a1', text: 'first', final: true}])")
    fake(second, "(f) => f.segments('agent-2', true, [{id: 'b1', text: 'second', final: true}])")
    page.wait_for_function(
        "() => listenTest.log(0, 'transcript').length && listenTest.log(1, 'transcript').length"
    )
    assert [t["text"] for t in log(page, 0, "transcript")] == ["first"]
    assert [t["text"] for t in log(page, 1, "transcript")] == ["second"]
    page.evaluate("() => listenTest.sessions[0].session.end()")
    page.wait_for_function("() => document.querySelectorAll('iframe').length === 1")
    assert session_call(page, "s.getState()", 1) == "connected"
    assert log(page, 1, "ended") == []


def test_mute_is_local_and_covers_tracks_that_arrive_later(page: Page, site, sdk_host) -> None:
    frame = connected_session(page, site, sdk_host)
    fake(frame, "(f) => f.addAudioTrack()")
    assert fake(frame, "(f) => f.audioMuted()") == [False]
    assert session_call(page, "(s.mute(), s.isMuted())") is True
    frame.wait_for_function("() => window.__anyreachFake.audioMuted().every((m) => m)", polling=50)
    fake(frame, "(f) => f.addAudioTrack()")
    assert fake(frame, "(f) => f.audioMuted()") == [True, True]
    # LiveKit's startAudio() unmutes the elements it plays; mute must survive it.
    page.evaluate("() => listenTest.sessions[0].session.startAudio()")
    assert fake(frame, "(f) => f.audioMuted()") == [True, True]
    assert session_call(page, "(s.unmute(), s.isMuted())") is False
    frame.wait_for_function("() => window.__anyreachFake.audioMuted().every((m) => !m)", polling=50)


def test_mute_before_connect_applies_to_the_first_track(page: Page, site, sdk_host) -> None:
    open_page(page, site, sdk_host)
    create(page, sdk_host, "auto")
    session_call(page, "s.mute()")
    connect(page)
    wait_connects(page, 0, ["resolved"])
    frame = listen_frame(page)
    fake(frame, "(f) => f.addAudioTrack()")
    assert fake(frame, "(f) => f.audioMuted()") == [True]


def transcripts(page: Page, count: int) -> list[tuple[str, str, str, bool]]:
    page.wait_for_function("(n) => listenTest.log(0, 'transcript').length >= n", arg=count)
    return [(t["id"], t["role"], t["text"], t["final"]) for t in log(page, 0, "transcript")]


def test_agent_deltas_accumulate_and_both_paths_are_deduplicated(
    page: Page, site, sdk_host
) -> None:
    """The frame's transcript paths reach the page, deduplicated. The merge's rows
    (interim streams, legacy segments, ...) are js/test/transcripts.test.ts's."""
    frame = connected_session(page, site, sdk_host)
    # Agent speech: one text stream of deltas per segment, final in the trailer,
    # and the same segment over the legacy transcription path.
    stream = fake(frame, "(f) => f.openStream('agent', true, 'SG_1', false)")
    fake(frame, "(f, s) => f.write(s, 'Hello')", stream)
    transcripts(page, 1)
    fake(frame, "(f) => f.segments('agent', true, [{id: 'SG_1', text: 'Hello', final: false}])")
    fake(frame, "(f, s) => f.write(s, ' there')", stream)
    transcripts(page, 2)
    fake(frame, "(f) => f.segments('agent', true, [{id: 'SG_1', text: 'Hel', final: false}])")
    fake(frame, "(f, s) => f.endStream(s, true)", stream)
    transcripts(page, 3)
    fake(
        frame,
        "(f) => f.segments('agent', true, [{id: 'SG_1', text: 'Hello there', final: true}])",
    )
    # A marker segment proves everything before it was processed.
    fake(frame, "(f) => f.segments('agent', true, [{id: 'END', text: 'end', final: true}])")
    assert transcripts(page, 4) == [
        ("SG_1", "agent", "Hello", False),
        ("SG_1", "agent", "Hello there", False),
        ("SG_1", "agent", "Hello there", True),
        ("END", "agent", "end", True),
    ]


def test_agent_disconnected_only_for_agents(page: Page, site, sdk_host) -> None:
    frame = connected_session(page, site, sdk_host)
    fake(frame, "(f) => f.participantLeft('caller-1', false)")
    fake(frame, "(f) => f.participantLeft('agent-7', true)")
    page.wait_for_function("() => listenTest.log(0, 'agentDisconnected').length === 1")
    assert log(page, 0, "agentDisconnected") == [{"participantIdentity": "agent-7"}]
    assert session_call(page, "s.getState()") == "connected"


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        ("ROOM_DELETED", None),
        ("DUPLICATE_IDENTITY", "same listener token"),
        ("PARTICIPANT_REMOVED", "removed from the conversation"),
    ],
)
def test_final_disconnect_tears_down_and_ends(
    page: Page, site, sdk_host, reason: str, error: str | None
) -> None:
    frame = connected_session(page, site, sdk_host)
    fake(frame, "(f, r) => f.close(r)", reason)
    page.wait_for_function("() => listenTest.log(0, 'ended').length === 1")
    assert page.locator("iframe").count() == 0
    assert log(page, 0, "stateChange") == ["connecting", "connected", "disconnected"]
    errors = [e["message"] for e in log(page, 0, "error")]
    if error is None:
        assert errors == []
    else:
        assert len(errors) == 1 and error in errors[0]
    assert log(page, 0, "ended") == [None]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong-url", "is not this host's LiveKit server"),
        ("not-a-jwt", "not a LiveKit access token"),
        ("org-origin-not-allowed", "is not allowed to listen"),
    ],
)
def test_connect_refusals_have_actionable_messages(
    page: Page, site, sdk_host, case: str, expected: str
) -> None:
    open_page(page, site, sdk_host)
    url, token = sdk_host.fake_url("auto"), make_token()
    if case == "wrong-url":
        url = "wss://elsewhere.example.com"
    elif case == "not-a-jwt":
        token = "not-a-token"
    else:
        token = make_token(embed_origins=["https://crm.example.com"])
    create(page, sdk_host, url=url, token=token)
    connect(page)
    [outcome] = settled(page)
    assert expected in outcome
    [error] = log(page, 0, "error")
    assert expected in error["message"]


def test_org_embed_origins_allow_the_listed_origin(page: Page, site, sdk_host) -> None:
    open_page(page, site, sdk_host)
    create(
        page, sdk_host, "auto", token=make_token(embed_origins=["https://x.example", site.origin])
    )
    connect(page)
    wait_connects(page, 0, ["resolved"])


# ---- the frame exists from listen(): preloaded, idle, given back ----


def test_listen_injects_the_frame_which_prepares_while_the_session_stays_idle(
    page: Page, site, sdk_host
) -> None:
    open_page(page, site, sdk_host)
    create(page, sdk_host, "manual")
    assert page.locator("iframe").count() == 1  # injected by listen() itself
    assert page.locator("iframe").get_attribute("src") == sdk_host.frame_url
    frame = listen_frame(page)
    # The frame took its handshake and warmed up for the host's own LiveKit url
    # (not the page's), with no command: nothing is connected, nothing reported.
    frame.wait_for_function("() => window.__anyreachFake.ignored.includes('init')", polling=50)
    assert fake(frame, "(f) => f.prepared") == [sdk_host.livekit_url]
    assert fake(frame, "(f) => f.calls") == []
    assert session_call(page, "s.getState()") == "idle"
    assert log(page, 0) == []
    # connect() uses the frame that is already there.
    connect(page)
    frame.wait_for_function("() => window.__anyreachFake.calls.includes('connect')", polling=50)
    fake(frame, "(f) => f.completeConnect()")
    wait_connects(page, 0, ["resolved"])
    assert page.locator("iframe").count() == 1
    assert log(page, 0, "stateChange") == ["connecting", "connected"]


def test_end_before_connect_removes_the_frame_and_ends(page: Page, site, sdk_host) -> None:
    open_page(page, site, sdk_host)
    create(page, sdk_host, "auto")
    frame = listen_frame(page)
    frame.wait_for_function("() => window.__anyreachFake.ignored.includes('init')", polling=50)
    page.evaluate("() => listenTest.sessions[0].session.end()")
    assert page.locator("iframe").count() == 0
    assert log(page, 0) == [["stateChange", "disconnected"], ["ended", None]]
    outcome = page.evaluate(
        "() => listenTest.sessions[0].session.connect().then(() => 'ok', (e) => e.message)"
    )
    assert "has ended" in outcome
    assert page.locator("iframe").count() == 0


def test_end_while_the_frame_loads_removes_it(page: Page, site, sdk_host) -> None:
    open_page(page, site, sdk_host)
    # listen() and end() in one task: the frame has not even started loading.
    page.evaluate(
        "([url, token]) => AnyReach.listen({ url, token }).end()",
        [sdk_host.fake_url("auto"), make_token()],
    )
    assert page.locator("iframe").count() == 0


def test_a_session_never_connected_gives_its_frame_back_and_can_still_connect(
    page: Page, site, sdk_host
) -> None:
    page.clock.install()
    open_page(page, site, sdk_host)
    _, listened_at = create_at(page, sdk_host, "auto")
    create(page, sdk_host, "auto")
    listen_frame(page, 1)
    connect(page, 1)  # the second session connects and must keep its frame
    wait_connects(page, 1, ["resolved"])
    page.clock.run_for(29_000 - pause_clock(page, listened_at))
    assert page.locator("iframe").count() == 2
    page.clock.run_for(1_500)
    assert page.locator("iframe").count() == 1
    page.clock.resume()
    assert session_call(page, "s.getState()", 0) == "idle"
    assert log(page, 0) == []
    assert session_call(page, "s.getState()", 1) == "connected"
    # The idle session loads a new frame when it finally connects.
    connect(page, 0)
    wait_connects(page, 0, ["resolved"])
    assert page.locator("iframe").count() == 2
    assert log(page, 0, "stateChange") == ["connecting", "connected"]
    page.clock.fast_forward(31_000)
    assert page.locator("iframe").count() == 2
