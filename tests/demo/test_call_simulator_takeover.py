"""demo/call_simulator.py pauses for a takeover and resumes in a real LiveKit room.

One simulated call; a second participant (standing in for the server's PerformRpc) calls
the agent's guidance method while a hidden listener in it records audio and transcripts:
a forged pause is refused and changes nothing; a signed pause cuts the agent's line (silent
within 1 s), its turns are skipped while the caller's go on and are still transcribed; a
signed resume makes it say the pickup line, and the script goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from demo.call_simulator import (
    PICKUP_LINE,
    TAKEN_OVER,
    CallConfig,
    CallReport,
    Turn,
    new_room_name,
    run_call,
)
from tests.demo.test_call_simulator_guidance import AGENT, Scene, TimedListener, until
from tests.support.guidance import LoopThread
from tests.support.livekit import LiveKitServer, livekit_server

SCENARIO_TIMEOUT = 240  # seconds: a whole call taken over, a deadline not a measure
pytestmark = [
    pytest.mark.e2e,
    # `livekit-server --dev`'s secret is short; the orders are signed with it.
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

CALLER = "caller"
SCRIPT = (
    Turn("agent", "Thank you for calling Acme support, this is Ava. How can I help you today?"),
    Turn("user", "Hi, I was charged twice for my order last week."),
    Turn("agent", "I am sorry about that. Could you tell me the order number on your receipt?"),
    Turn("user", "Sure, it is four five seven two one."),  # to the supervisor
    Turn("agent", "Thanks. I see the duplicate charge, and I have issued a refund."),  # skipped
    Turn("user", "Great, thank you so much for sorting that out so quickly."),  # handed back
    Turn("agent", "You are welcome. Is there anything else I can help you with?"),
    Turn("user", "No, that is all. Bye."),
)
LINES = "Caller: Sure, it is four five seven two one.\nSupervisor Ana: I have refunded it."
SILENT_WITHIN = 1.0  # seconds from the pause order to the agent's last audible frame


@pytest.fixture(scope="module")
def livekit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveKitServer]:
    with livekit_server(tmp_path_factory.mktemp("call-takeover")) as server:
        yield server


async def caller_speaking(listener: TimedListener, text: str, timeout: float = 30) -> None:
    """Wait until the caller's line ``text`` is being transcribed (an interim heard)."""
    start = text.split()[0]

    def speaking() -> bool:
        return any(h.text.startswith(start) and not h.final for h in listener.of(CALLER, "legacy"))

    await until(speaking, timeout=timeout, what=f"the caller saying {start!r}")


def agent_finals(listener: TimedListener) -> int:
    return len(listener.agent_finals())


async def _scenario(livekit: LiveKitServer) -> tuple[CallReport, TimedListener, list[str]]:
    room_name = new_room_name()
    config = CallConfig(
        url=livekit.url,
        api_key=livekit.api_key,
        api_secret=livekit.api_secret,
        room_name=room_name,
        agent_identity=AGENT,
        caller_identity=CALLER,
        script=SCRIPT,
    )
    listener = TimedListener(livekit.url, livekit.token(room_name, "supervisor", can_publish=False))
    scene = Scene(livekit, room_name, listener)
    stop = asyncio.Event()
    heard_while_paused: list[str] = []
    await listener.connect()
    call = asyncio.create_task(run_call(config, stop))
    try:
        await until(lambda: AGENT in listener.room.remote_participants, timeout=15, what="agent")

        # During the first line: a forged pause is refused (the line is not cut), and a
        # resume with nothing paused is acknowledged and does nothing.
        await scene.agent_speaking(SCRIPT[0].text)
        forged = "a-forged-secret-of-thirty-two-chars!"
        refused = await scene.call(scene.order("f1:pause", "pause", "", forged))
        assert refused["status"] == "refused" and "invalid signature" in refused["reason"]
        assert refused["id"] == "f1:pause"
        nothing = await scene.call(scene.order("t0:resume", "resume", LINES))
        assert nothing == {"id": "t0:resume", "status": "applied"}

        # The pause, during the third line: cut, and silent within a second.
        await scene.agent_speaking(SCRIPT[2].text)
        ordered = time.monotonic()
        paused = await scene.call(scene.order("t1:pause", "pause", ""))
        acknowledged = time.monotonic()
        assert paused == {"id": "t1:pause", "status": "applied"}
        print(f"pause acknowledged in {1000 * (acknowledged - ordered):.0f} ms")
        await until(lambda: agent_finals(listener) == 2, timeout=5, what="the cut line's final")
        mark = len(listener.heard)
        # The cut line's copy on the other transcript path may still be on its way.
        said_before_pause = {h.segment_id for h in listener.agent_finals()}
        # Retried, or another pause while paused: acknowledged, nothing more happens.
        assert await scene.call(scene.order("t1:pause", "pause", "")) == paused
        again = await scene.call(scene.order("t2:pause", "pause", ""))
        assert again == {"id": "t2:pause", "status": "applied"}
        # A say is refused while a person has the call.
        said = await scene.call(scene.order("g1", "say", "Are you still there?"))
        assert said == {"id": "g1", "status": "refused", "reason": TAKEN_OVER}

        # The caller goes on (the agent's turn between passes in silence) and is transcribed.
        await caller_speaking(listener, SCRIPT[5].text, timeout=60)
        resumed_at = time.monotonic()
        heard_while_paused = [
            h.participant for h in listener.heard[mark:] if h.segment_id not in said_before_pause
        ]
        last_agent_frame = max(listener.loud_at.get(AGENT, [0.0]))
        print(f"agent silent {1000 * (last_agent_frame - ordered):.0f} ms after the pause")
        assert last_agent_frame - ordered <= SILENT_WITHIN, last_agent_frame - ordered

        # The resume: acknowledged, then the pickup line is heard, and the script goes on.
        resumed = await scene.call(scene.order("t1:resume", "resume", LINES))
        assert resumed == {"id": "t1:resume", "status": "applied"}
        await until(lambda: listener.loud_since(resumed_at) >= 50, timeout=5, what="the pickup")
        first = min(at for at in listener.loud_at[AGENT] if at > resumed_at)
        print(f"agent heard {1000 * (first - resumed_at):.0f} ms after the resume order")
        assert await scene.call(scene.order("t1:resume", "resume", LINES)) == resumed

        report = await asyncio.wait_for(call, timeout=90)
    finally:
        stop.set()
        await asyncio.gather(call, return_exceptions=True)
        await listener.close()
    return report, listener, heard_while_paused


def test_the_simulated_agent_pauses_for_a_takeover_and_picks_the_call_up(
    livekit: LiveKitServer,
) -> None:
    # On a loop of its own: in the whole suite, Playwright's sync API holds this thread's.
    with LoopThread() as loop:
        report, listener, heard_while_paused = loop.run(
            _scenario(livekit), timeout=SCENARIO_TIMEOUT
        )
    finals = {h.segment_id: h.text for h in listener.agent_finals()}
    # While paused, the caller's words reached the listener and no agent transcript did.
    assert heard_while_paused and set(heard_while_paused) == {CALLER}, heard_while_paused
    # The agent's lines: the first whole (the forged pause changed nothing), the third cut,
    # the fifth skipped, then the pickup line and the seventh.
    first, cut, seventh = report.segments["agent"]
    assert finals[first] == SCRIPT[0].text
    assert SCRIPT[2].text.startswith(finals[cut]) and finals[cut] != SCRIPT[2].text
    assert report.skipped == 1 and report.turns == len(SCRIPT) - 1
    [pickup] = report.picked_up  # a repeated resume did not pick up again
    assert finals[pickup] == PICKUP_LINE
    streamed = [h for h in listener.of(AGENT, "stream") if h.segment_id == pickup]
    assert [(h.text, h.final) for h in streamed] == [(PICKUP_LINE, True)]
    assert finals[seventh] == SCRIPT[6].text
    # Every caller line was transcribed whole, those said during the takeover too.
    user_finals = [h.text for h in listener.of(CALLER, "legacy") if h.final]
    assert user_finals == [t.text for t in SCRIPT if t.role == "user"]
    assert [(g["id"], g["mode"], g["status"]) for g in report.guidance] == [
        ("f1:pause", "", "refused"),
        ("t0:resume", "resume", "applied"),
        ("t1:pause", "pause", "applied"),
        ("t2:pause", "pause", "applied"),
        ("g1", "say", "refused"),
        ("t1:resume", "resume", "applied"),
    ]
