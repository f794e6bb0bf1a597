"""anyreach_listen.agent.guidance's takeover without LiveKit: what a signed ``pause`` and
``resume`` do to a session, that nothing else does anything, and that repeated or
crossing orders do no harm.

The stand-in room and session of ``test_guidance.py``, the session also recording what a
pause and a resume ask of it (turn detection, outputs, the user turn, a reply).
``test_example.py`` pauses and resumes a real AgentSession in a real room.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from livekit import rtc
from livekit.agents import NOT_GIVEN, NotGivenOr, llm

from anyreach_listen.agent import guidance as agent_guidance
from anyreach_listen.agent.guidance import PICKUP_INSTRUCTIONS, TAKEOVER_PREFIX, WHISPER_PREFIX
from anyreach_listen.assist import signing
from anyreach_listen.assist.signing import GUIDANCE_METHOD, GuidanceOrder
from tests.agent.test_guidance import (
    AGENT,
    KEY,
    ROOM,
    SECRET,
    Handler,
    _Agent,
    _enabled,
    _order,
    _Session,
)

LINES = "Caller: I want to cancel.\nSupervisor Ana: I have cancelled it for you."
PAUSED = [
    ("interrupt", True),
    ("turn_detection", "manual"),
    ("audio", False),
    ("transcription", False),
]


@dataclass
class _Output:
    calls: list[tuple[str, Any]]
    audio_enabled: bool = True
    transcription_enabled: bool = True

    def set_audio_enabled(self, enabled: bool) -> None:
        self.calls.append(("audio", enabled))
        self.audio_enabled = enabled

    def set_transcription_enabled(self, enabled: bool) -> None:
        self.calls.append(("transcription", enabled))
        self.transcription_enabled = enabled


class _TurnsAgent(_Agent):
    """An agent that may have a turn detection of its own, as livekit's ``Agent``."""

    def __init__(self, calls: list[tuple[str, Any]], own: NotGivenOr[Any] = NOT_GIVEN) -> None:
        super().__init__()
        self._calls, self._turn_detection = calls, own

    @property
    def turn_detection(self) -> NotGivenOr[Any]:
        return self._turn_detection

    @turn_detection.setter
    def turn_detection(self, value: Any) -> None:
        self._calls.append(("agent_turn_detection", value))
        self._turn_detection = value


@dataclass
class _PausableSession(_Session):
    """Records the calls a pause and a resume make; ``stops_after``: seconds the
    interrupted speech takes to stop (None: never)."""

    turn_detection: Any = "vad"
    stops_after: float | None = 0.0
    agents_own: NotGivenOr[Any] = NOT_GIVEN
    output: _Output = field(init=False)

    def __post_init__(self) -> None:
        self.output = _Output(self.calls)
        self.current_agent = _TurnsAgent(self.calls, self.agents_own)

    def interrupt(self, *, force: bool = False) -> asyncio.Future[None]:
        if self.stops_after is None or self.stops_after > 0:
            if self.failing:
                raise RuntimeError("AgentSession isn't running")
            self.calls.append(("interrupt", force))
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if self.stops_after is not None:
                asyncio.get_running_loop().call_later(self.stops_after, done.set_result, None)
            return done
        return super().interrupt(force=force)

    def update_options(self, *, turn_detection: Any) -> None:
        self.calls.append(("turn_detection", turn_detection))
        self.turn_detection = turn_detection

    def clear_user_turn(self) -> None:
        self.calls.append(("clear_user_turn", None))

    def generate_reply(self, *, instructions: str) -> None:
        self.calls.append(("generate_reply", instructions))


async def _ask(handler: Handler, payload: str) -> dict[str, Any]:
    data = rtc.RpcInvocationData("req", "server", payload, 5.0, GUIDANCE_METHOD)
    answer: dict[str, Any] = json.loads(await handler(data))
    return answer


def _call(handler: Handler, *payloads: str) -> list[dict[str, Any]]:
    """Each payload's answer, in turn, on one event loop (the handler's lock lives on it)."""

    async def calls() -> list[dict[str, Any]]:
        return [await _ask(handler, payload) for payload in payloads]

    return asyncio.run(calls())


def _pause(gid: str = "t1:pause") -> str:
    return _order("pause", "", gid)


def _resume(text: str = LINES, gid: str = "t1:resume") -> str:
    return _order("resume", text, gid)


def _system(session: _Session) -> list[tuple[str | None, str]]:
    items = session.current_agent.chat_ctx.items
    return [
        (i.id, i.text_content or "")
        for i in items
        if isinstance(i, llm.ChatMessage) and i.role == "system"
    ]


def _applied(gid: str) -> dict[str, Any]:
    return {"id": gid, "status": "applied"}


def test_pause_stops_the_agent_its_replies_and_its_outputs() -> None:
    session = _PausableSession()
    [answer] = _call(_enabled(session, api_secret=SECRET), _pause())
    assert answer == _applied("t1:pause")
    assert session.calls == PAUSED
    assert session.turn_detection == "manual"  # the STT goes on; no turn is committed
    assert not session.output.audio_enabled and not session.output.transcription_enabled
    assert _system(session) == []


def test_pause_answers_once_the_interrupted_speech_has_stopped() -> None:
    session = _PausableSession(stops_after=0.3)
    handler = _enabled(session, api_secret=SECRET)

    async def scenario() -> tuple[dict[str, Any], float]:
        loop = asyncio.get_running_loop()
        began = loop.time()
        answer = await _ask(handler, _pause())
        return answer, loop.time() - began

    answer, took = asyncio.run(scenario())
    assert answer == _applied("t1:pause") and took >= 0.3


def test_pause_answers_after_a_bounded_wait_when_the_speech_never_reports_stopping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The outputs are off by then: nothing more is heard either way.
    monkeypatch.setattr(agent_guidance, "PAUSE_SETTLE", 0.2)
    session = _PausableSession(stops_after=None)
    [answer] = _call(_enabled(session, api_secret=SECRET), _pause())
    assert answer == _applied("t1:pause") and session.calls == PAUSED


def test_resume_restores_turns_and_outputs_adds_the_lines_and_asks_for_a_reply() -> None:
    session = _PausableSession(turn_detection="stt")
    answers = _call(_enabled(session, api_secret=SECRET), _pause(), _resume())
    assert answers == [_applied("t1:pause"), _applied("t1:resume")]
    assert session.calls == [
        ("interrupt", True),
        ("turn_detection", "manual"),
        ("audio", False),
        ("transcription", False),
        ("clear_user_turn", None),  # the caller's words meanwhile: in the lines, not a turn
        ("turn_detection", "stt"),
        ("audio", True),
        ("transcription", True),
        ("generate_reply", PICKUP_INSTRUCTIONS),
    ]
    assert session.turn_detection == "stt"
    assert session.output.audio_enabled and session.output.transcription_enabled
    assert _system(session) == [("takeover_t1:resume", TAKEOVER_PREFIX + LINES)]


def test_resume_restores_what_the_pause_found_not_what_it_assumes() -> None:
    # No turn detection chosen (automatic), outputs the integrator had turned off, and an
    # agent with a turn detection of its own.
    session = _PausableSession(turn_detection=None, agents_own="vad")
    session.output.audio_enabled = session.output.transcription_enabled = False
    _call(_enabled(session, api_secret=SECRET), _pause(), _resume())
    assert session.turn_detection is None
    assert not session.output.audio_enabled and not session.output.transcription_enabled
    restored = session.calls[session.calls.index(("clear_user_turn", None)) :]
    assert restored == [
        ("clear_user_turn", None),
        ("turn_detection", None),
        ("agent_turn_detection", "vad"),  # the agent's own mode wins again
        ("generate_reply", PICKUP_INSTRUCTIONS),
    ]


def test_a_resume_with_nothing_said_adds_no_message_and_still_picks_up() -> None:
    session = _PausableSession()
    _call(_enabled(session, api_secret=SECRET), _pause(), _resume(""))
    assert _system(session) == []
    assert session.calls[-1] == ("generate_reply", PICKUP_INSTRUCTIONS)


def _signed_pause(**kwargs: Any) -> str:
    fields = {"room": ROOM, "api_key": KEY, "api_secret": SECRET, "identity": AGENT} | kwargs
    return signing.sign(GuidanceOrder("t1:pause", "pause", ""), **fields)


def _expired_pause() -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "anyreach-guidance", "room": ROOM, "gid": "t1:pause"}
    claims |= {"mode": "pause", "sha256": signing.text_digest(""), "aud": AGENT, "iss": KEY}
    claims |= {"iat": now - 120, "exp": now - 60}
    token = jwt.encode(claims, signing.signing_key(SECRET), algorithm="HS256")
    return json.dumps({"token": token, "text": ""})


def _pause_with_text() -> str:
    # A pause carries no text: one signed with some is malformed.
    order = GuidanceOrder("t1:pause", "pause", "Say you are sorry.")
    return signing.sign(order, room=ROOM, api_key=KEY, api_secret=SECRET, identity=AGENT)


# Signed when the test runs, not when it is collected: a long run would expire them.
REFUSED_PAUSES: dict[str, tuple[Callable[[], str], str]] = {
    "unsigned": (lambda: json.dumps({"mode": "pause", "text": ""}), "invalid signature"),
    "forged": (lambda: _signed_pause(api_secret="x" * 40), "Signature verification failed"),
    "expired": (_expired_pause, "expired"),
    "other-room": (lambda: _signed_pause(room="other"), "another room"),
    "other-agent": (lambda: _signed_pause(identity="agent-other"), "another participant"),
    "other-key": (lambda: _signed_pause(api_key="other"), "another API key"),
    "with-text": (_pause_with_text, "malformed order"),
}


@pytest.mark.parametrize("case", REFUSED_PAUSES)
def test_a_pause_not_signed_for_this_agent_is_refused_and_changes_nothing(case: str) -> None:
    payload, reason = REFUSED_PAUSES[case]
    session = _PausableSession()
    [answer] = _call(_enabled(session, api_secret=SECRET, api_key=KEY), payload())
    assert answer["status"] == "refused", answer
    assert reason in answer["reason"], answer
    assert session.calls == [] and session.turn_detection == "vad"
    assert session.output.audio_enabled and session.output.transcription_enabled


def test_after_a_forged_pause_a_resume_finds_nothing_to_undo() -> None:
    session = _PausableSession()
    forged, resumed = _call(
        _enabled(session, api_secret=SECRET), _signed_pause(api_secret="x" * 40), _resume()
    )
    assert forged["status"] == "refused" and resumed == _applied("t1:resume")
    assert session.calls == [] and _system(session) == []


def test_repeated_and_unexpected_orders_are_acknowledged_and_do_no_harm() -> None:
    session = _PausableSession()
    answers = _call(
        _enabled(session, api_secret=SECRET),
        _resume(gid="t0:resume"),  # never paused: nothing to undo
        _pause(),
        _pause(),  # the server's retry: acknowledged, applied once
        _pause("t2:pause"),  # another pause while paused: already in effect
        _resume(),
        _resume(),  # retry
        _resume(gid="t2:resume"),  # resumed already
    )
    ids = ["t0:resume", "t1:pause", "t1:pause", "t2:pause", "t1:resume", "t1:resume"]
    assert answers == [_applied(gid) for gid in [*ids, "t2:resume"]]
    assert session.calls.count(("interrupt", True)) == 1
    assert session.calls.count(("generate_reply", PICKUP_INSTRUCTIONS)) == 1
    assert _system(session) == [("takeover_t1:resume", TAKEOVER_PREFIX + LINES)]
    assert session.turn_detection == "vad" and session.output.audio_enabled


def test_a_pause_and_a_resume_crossing_are_applied_in_turn() -> None:
    # The resume arrives while the pause still waits for the agent's speech to stop.
    session = _PausableSession(stops_after=0.3)
    handler = _enabled(session, api_secret=SECRET)

    async def scenario() -> list[dict[str, Any]]:
        pausing = asyncio.ensure_future(_ask(handler, _pause()))
        await asyncio.sleep(0.05)
        return list(await asyncio.gather(pausing, _ask(handler, _resume())))

    assert asyncio.run(scenario()) == [_applied("t1:pause"), _applied("t1:resume")]
    assert session.calls[:4] == PAUSED
    assert session.calls[-1] == ("generate_reply", PICKUP_INSTRUCTIONS)
    assert session.turn_detection == "vad" and session.output.audio_enabled


def test_a_say_while_paused_is_refused_and_a_whisper_kept_for_after() -> None:
    session = _PausableSession()
    handler = _enabled(session, api_secret=SECRET)
    paused, said, whispered = _call(
        handler, _pause(), _order("say", "Hello?", "g1"), _order("whisper", "Be brief.", "g2")
    )
    assert paused == _applied("t1:pause") and whispered == _applied("g2")
    assert said["status"] == "refused" and said["id"] == "g1"
    assert said["reason"].startswith("taken over"), said
    assert session.calls == PAUSED
    assert _system(session) == [("guidance_g2", WHISPER_PREFIX + "Be brief.")]
    # The refused say was not remembered: once resumed, its retry is said.
    resumed, said = _call(handler, _resume(), _order("say", "Hello?", "g1"))
    assert resumed == _applied("t1:resume") and said == _applied("g1")
    assert session.calls[-2:] == [("interrupt", True), ("say", "Hello?")]


def test_a_session_that_cannot_pause_refuses_with_a_reason_and_a_retry_tries_again() -> None:
    session = _PausableSession(failing=True)
    handler = _enabled(session, api_secret=SECRET)
    [answer] = _call(handler, _pause())
    assert answer["status"] == "refused" and answer["id"] == "t1:pause"
    assert "isn't running" in answer["reason"]
    assert session.calls == [] and session.turn_detection == "vad"
    session.failing = False
    assert _call(handler, _pause()) == [_applied("t1:pause")]
    assert session.calls == PAUSED
