"""Transcript roles come from who published, never from what a caller says about itself.

While the SDK listens to a simulated call in Chromium, a second caller with a caller's
token poses as the agent every way it controls (identity, name, attributes, transcripts
naming the agent's track). Its lines reach the page as ``user``, or not at all when it
claims a track it does not own, and the real agent's lines stay ``agent``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser

from demo.call_simulator import DEFAULT_SCRIPT, CallConfig
from tests.browser.pages import EmbeddingSite
from tests.e2e.rogue import IDENTITY as ROGUE_IDENTITY
from tests.e2e.rogue import RogueCaller
from tests.e2e.sdk_pages import (
    RTC_HOOK_JS,
    audio_elements,
    connects,
    listen_frame,
    log,
    open_listener_page,
)
from tests.support.processes import wait_until
from tests.support.stack import Stack, simulated_call

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

AGENT_IDENTITY = CallConfig.agent_identity
CALLER_IDENTITY = CallConfig.caller_identity
AGENT_LINES = {turn.text for turn in DEFAULT_SCRIPT if turn.role == "agent"}


@pytest.fixture
def embedder() -> Iterator[EmbeddingSite]:
    with EmbeddingSite().running() as site:
        yield site


def _finals(page: Any, role: str) -> list[dict[str, Any]]:
    return [t for t in log(page, "transcript") if t["final"] and t["role"] == role]


def test_a_caller_cannot_make_its_words_the_agents(
    stack: Stack, browser: Browser, embedder: EmbeddingSite
) -> None:
    context = browser.new_context()
    context.set_default_timeout(20_000)
    context.add_init_script(RTC_HOOK_JS)
    try:
        with simulated_call(stack, "--loop") as call:
            response = stack.mint(call.conversation_id, stack.seed["api_keys"]["read_sensitive"])
            assert response.status_code == 200, response.text
            grant = response.json()
            page = open_listener_page(
                context, embedder, f"{stack.base_url}/public/listen-sdk", grant
            )
            wait_until(lambda: connects(page) == ["resolved"], timeout=20, what="connect()")
            wait_until(lambda: _finals(page, "agent"), timeout=30, what="an agent line")

            with RogueCaller(stack.livekit, call.room_name) as rogue:
                # The listener subscribes to the rogue's track too: then its frame knows
                # whose track it is (a stream naming a track it does not know is dropped).
                frame = listen_frame(page)
                wait_until(lambda: len(audio_elements(frame)) >= 3, timeout=10, what="three tracks")
                agent_track = wait_until(
                    lambda: rogue.track_of(AGENT_IDENTITY), timeout=10, what="the agent's track"
                )
                caller_track = rogue.track_of(CALLER_IDENTITY)
                assert caller_track and rogue.track_sid not in (agent_track, caller_track)

                # Lines about itself: shown, as the user's.
                rogue.stream("SG_rogue_own", "ROGUE own track", track_sid=rogue.track_sid)
                rogue.stream("SG_rogue_none", "ROGUE no track")
                # Lines claiming someone else's track: dropped.
                rogue.stream("SG_rogue_agent", "ROGUE agent track", track_sid=agent_track)
                rogue.stream(
                    "SG_rogue_deltas", "ROGUE agent deltas", track_sid=agent_track, deltas=True
                )
                rogue.stream(
                    "SG_rogue_as_agent",
                    "ROGUE sent as the agent",
                    track_sid=agent_track,
                    sender_identity=AGENT_IDENTITY,
                )
                rogue.stream("SG_rogue_caller", "ROGUE caller track", track_sid=caller_track)
                # Legacy transcriptions: LiveKit forwards them from agents only.
                rogue.legacy(
                    "SG_rogue_legacy",
                    "ROGUE legacy",
                    identity=AGENT_IDENTITY,
                    track_sid=agent_track,
                )
                rogue.legacy(
                    "SG_rogue_legacy_own",
                    "ROGUE legacy own",
                    identity=ROGUE_IDENTITY,
                    track_sid=rogue.track_sid,
                )
                # Last on the same reliable channel: once it is shown, the others had their turn.
                rogue.stream("SG_rogue_last", "ROGUE last", track_sid=rogue.track_sid)
                wait_until(
                    lambda: any(t["id"] == "SG_rogue_last" for t in log(page, "transcript")),
                    timeout=15,
                    what="the rogue's last line",
                )
                # And the real agent goes on being the agent after all of it.
                before = len(_finals(page, "agent"))
                wait_until(
                    lambda: len(_finals(page, "agent")) > before,
                    timeout=30,
                    what="another agent line",
                )
            events: list[dict[str, Any]] = log(page, "transcript")
            errors, departed = log(page, "error"), log(page, "agentDisconnected")
        report = call.report()
    finally:
        context.close()

    rogue_events = [t for t in events if t["id"].startswith("SG_rogue")]
    print(f"rogue lines on the page: {rogue_events}")
    assert {t["role"] for t in rogue_events} == {"user"}, rogue_events
    assert {t["id"]: t["text"] for t in rogue_events} == {
        "SG_rogue_own": "ROGUE own track",
        "SG_rogue_none": "ROGUE no track",
        "SG_rogue_last": "ROGUE last",
    }
    assert all("ROGUE" not in t["text"] for t in events if not t["id"].startswith("SG_rogue"))

    # The call's own lines: the agent's as agent, the caller's as user.
    agent_ids, caller_ids = set(report["segments"]["agent"]), set(report["segments"]["user"])
    real = [t for t in events if t["id"] in agent_ids | caller_ids]
    assert real and len(real) + len(rogue_events) == len(events), events
    for t in real:
        assert t["role"] == ("agent" if t["id"] in agent_ids else "user"), t
    agent_finals = [t["text"] for t in real if t["final"] and t["role"] == "agent"]
    assert len(agent_finals) >= 2 and set(agent_finals) <= AGENT_LINES, agent_finals
    assert not errors, errors
    # The rogue leaving is no agent leaving.
    assert all(d["participantIdentity"] == AGENT_IDENTITY for d in departed), departed
