"""demo/call_simulator.py obeys supervisors' signed guidance in a real LiveKit room.

One simulated call; a second participant (standing in for the server's PerformRpc) calls
the agent's guidance method while a listener in it records audio and transcripts:
forged orders are refused and change nothing, a signed ``say`` cuts the agent's line and
is heard and transcribed, a signed ``whisper`` makes the next agent line begin "Noted.".
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from livekit import rtc

from anyreach_listen.assist import signing
from anyreach_listen.assist.signing import GUIDANCE_METHOD, GuidanceOrder
from demo.call_simulator import (
    WHISPER_ACKNOWLEDGEMENT,
    CallConfig,
    CallReport,
    Turn,
    new_room_name,
    run_call,
)
from tests.e2e.listener import Heard, Listener
from tests.support.guidance import LoopThread
from tests.support.livekit import LiveKitServer, livekit_server

SCENARIO_TIMEOUT = 240  # seconds: a whole guided call, a deadline not a measure
pytestmark = [
    pytest.mark.e2e,
    # `livekit-server --dev`'s secret is short; the orders are signed with it.
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

AGENT = "agent-ava"
SCRIPT = (
    Turn("agent", "Thank you for calling Acme support, this is Ava. How can I help you today?"),
    Turn("user", "Hi, I was charged twice for my order last week."),
    Turn("agent", "I am sorry about that. Could you tell me the order number on your receipt?"),
    Turn("user", "Sure, it is four five seven two one."),
    Turn("agent", "Thanks. I see the duplicate charge, and I have issued a refund."),
)
SAY = "Please hold for a moment while I check that with my supervisor."
LOUD = 1000  # a frame of espeak speech peaks far above this; silence is 0


@pytest.fixture(scope="module")
def livekit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveKitServer]:
    with livekit_server(tmp_path_factory.mktemp("call-guidance")) as server:
        yield server


@dataclass
class TimedListener(Listener):
    """A listener that also notes when it heard each participant's loud frames."""

    loud_at: dict[str, list[float]] = field(default_factory=dict)

    async def _measure(self, track: rtc.Track, identity: str) -> None:
        stream = rtc.AudioStream(track, sample_rate=48_000, num_channels=1)
        try:
            async for event in stream:
                samples = np.frombuffer(event.frame.data, dtype=np.int16).astype(np.int32)
                if samples.size and np.abs(samples).max() > LOUD:
                    self.loud_at.setdefault(identity, []).append(time.monotonic())
        finally:
            await stream.aclose()

    def agent_finals(self) -> list[Heard]:
        return [h for h in self.of(AGENT, "legacy") if h.final]

    def loud_since(self, moment: float) -> int:
        return sum(at > moment for at in self.loud_at.get(AGENT, []))


async def until[T](check: Callable[[], T], *, timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
    return value


@dataclass
class Scene:
    livekit: LiveKitServer
    room_name: str
    listener: TimedListener

    def order(self, gid: str, mode: str, text: str, secret: str | None = None) -> str:
        order = GuidanceOrder(id=gid, mode=mode, text=text)  # type: ignore[arg-type]
        return signing.sign(
            order,
            room=self.room_name,
            api_key=self.livekit.api_key,
            api_secret=secret or self.livekit.api_secret,
            identity=AGENT,
        )

    async def call(self, payload: str) -> dict[str, Any]:
        answer = await self.listener.room.local_participant.perform_rpc(
            destination_identity=AGENT, method=GUIDANCE_METHOD, payload=payload
        )
        decoded: dict[str, Any] = json.loads(answer)
        return decoded

    async def agent_speaking(self, text: str, timeout: float = 30) -> None:
        """Wait until the agent's line ``text`` is being spoken (its second word heard)."""
        start = " ".join(text.split()[:2])

        def speaking() -> bool:
            return any(
                h.text.startswith(start) and not h.final for h in self.listener.of(AGENT, "legacy")
            )

        await until(speaking, timeout=timeout, what=f"the agent saying {start!r}")


async def _scenario(livekit: LiveKitServer) -> tuple[CallReport, TimedListener]:
    room_name = new_room_name()
    config = CallConfig(
        url=livekit.url,
        api_key=livekit.api_key,
        api_secret=livekit.api_secret,
        room_name=room_name,
        agent_identity=AGENT,
        script=SCRIPT,
    )
    listener = TimedListener(livekit.url, livekit.token(room_name, "supervisor", can_publish=False))
    scene = Scene(livekit, room_name, listener)
    stop = asyncio.Event()
    await listener.connect()
    call = asyncio.create_task(run_call(config, stop))
    try:
        await until(lambda: AGENT in listener.room.remote_participants, timeout=15, what="agent")

        # Forged orders, during the first line: refused; the line is not cut.
        await scene.agent_speaking(SCRIPT[0].text)
        forged = "a-forged-secret-of-thirty-two-chars!"
        refused = await scene.call(scene.order("f1", "say", "You owe us money.", forged))
        assert refused["status"] == "refused" and "invalid signature" in refused["reason"]
        other_room = signing.sign(
            GuidanceOrder("f2", "whisper", "Be rude."),
            room="another-room",
            api_key=livekit.api_key,
            api_secret=livekit.api_secret,
            identity=AGENT,
        )
        refused = await scene.call(other_room)
        assert refused["status"] == "refused" and "another room" in refused["reason"]
        # Each refusal names the order it could not verify.
        assert refused["id"] == "f2"

        # A signed say, during the third line: it is cut, and the say is heard next.
        await scene.agent_speaking(SCRIPT[2].text)
        ordered = time.monotonic()
        said = await scene.call(scene.order("g1", "say", SAY))
        acknowledged = time.monotonic()
        assert said == {"id": "g1", "status": "applied"}
        print(f"say acknowledged in {1000 * (acknowledged - ordered):.0f} ms")
        # Heard: half a second of the agent's speech after the acknowledgement, which
        # came once the cut line had stopped and the say's first frame was sent.
        await until(lambda: listener.loud_since(acknowledged) >= 50, timeout=5, what="the say")

        # A signed whisper: the next agent line acknowledges it.
        whispered = await scene.call(scene.order("g2", "whisper", "Offer a 10% voucher."))
        assert whispered == {"id": "g2", "status": "applied"}

        report = await asyncio.wait_for(call, timeout=90)
    finally:
        stop.set()
        await asyncio.gather(call, return_exceptions=True)
        await listener.close()
    return report, listener


def test_the_simulated_agent_obeys_signed_guidance_and_refuses_forged(
    livekit: LiveKitServer,
) -> None:
    # On a loop of its own: in the whole suite, Playwright's sync API holds this thread's.
    with LoopThread() as loop:
        report, listener = loop.run(_scenario(livekit), timeout=SCENARIO_TIMEOUT)
    finals = {h.segment_id: h.text for h in listener.agent_finals()}
    lines = report.segments["agent"]
    assert len(lines) == 3 and report.turns == len(SCRIPT)
    # The forged orders changed nothing: the first line was said whole, nothing else said.
    assert finals[lines[0]] == SCRIPT[0].text
    # The say cut the third line short, and was said, on both transcript paths, final.
    cut = finals[lines[1]]
    assert SCRIPT[2].text.startswith(cut) and 0 < len(cut) < len(SCRIPT[2].text), cut
    [said] = report.said
    assert finals[said] == SAY
    streamed = [h for h in listener.of(AGENT, "stream") if h.segment_id == said]
    assert [(h.text, h.final) for h in streamed] == [(SAY, True)]
    # The whisper: the next agent line begins with the acknowledgement, then the script.
    assert finals[lines[2]] == f"{WHISPER_ACKNOWLEDGEMENT} {SCRIPT[4].text}"
    # The caller's lines went on after the say.
    user_finals = [h.text for h in listener.of("caller", "legacy") if h.final]
    assert user_finals == [SCRIPT[1].text, SCRIPT[3].text]
    assert [(g["id"], g["mode"], g["status"]) for g in report.guidance] == [
        ("f1", "", "refused"),
        ("f2", "", "refused"),
        ("g1", "say", "applied"),
        ("g2", "whisper", "applied"),
    ]
