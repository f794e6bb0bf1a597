"""anyreach_listen.agent.guidance without LiveKit: what a verified order does to a session,
and that nothing else does anything.

A stand-in room captures the registered RPC handler; a stand-in session records the
calls the handler makes. ``test_example.py`` runs a real AgentSession in a real room.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from livekit import rtc
from livekit.agents import llm

from anyreach_listen.agent import enable_guidance
from anyreach_listen.agent.guidance import WHISPER_PREFIX
from anyreach_listen.assist import signing
from anyreach_listen.assist.signing import GUIDANCE_METHOD, GuidanceOrder

SECRET = "an-agent-test-secret-of-at-least-32-chars"
ROOM = "call-room"

Handler = Callable[[rtc.RpcInvocationData], Coroutine[Any, Any, str]]


@dataclass
class _Participant:
    handlers: dict[str, Handler] = field(default_factory=dict)

    def register_rpc_method(self, name: str, handler: Handler) -> None:
        self.handlers[name] = handler


@dataclass
class _Room:
    name: str = ROOM
    local_participant: _Participant = field(default_factory=_Participant)


class _Agent:
    def __init__(self) -> None:
        self._ctx = llm.ChatContext()

    @property
    def chat_ctx(self) -> llm.ChatContext:
        return self._ctx

    async def update_chat_ctx(self, chat_ctx: llm.ChatContext) -> None:
        self._ctx = chat_ctx


@dataclass
class _Session:
    calls: list[tuple[str, Any]] = field(default_factory=list)
    current_agent: _Agent = field(default_factory=_Agent)
    failing: bool = False

    def interrupt(self, *, force: bool = False) -> None:
        if self.failing:
            raise RuntimeError("AgentSession isn't running")
        self.calls.append(("interrupt", force))

    def say(self, text: str) -> None:
        self.calls.append(("say", text))


def _enabled(session: _Session, **kwargs: Any) -> Handler:
    room = _Room()
    enable_guidance(session, room, **kwargs)  # type: ignore[arg-type]
    return room.local_participant.handlers[GUIDANCE_METHOD]


def _call(handler: Handler, payload: str) -> dict[str, Any]:
    data = rtc.RpcInvocationData("req", "server", payload, 5.0, GUIDANCE_METHOD)
    answer: dict[str, Any] = json.loads(asyncio.run(handler(data)))
    return answer


def _order(mode: str = "say", text: str = "Let me transfer you now.", gid: str = "g1") -> str:
    order = GuidanceOrder(id=gid, mode=mode, text=text)  # type: ignore[arg-type]
    return signing.sign(order, room=ROOM, api_key="key", api_secret=SECRET)


def _messages(session: _Session) -> list[llm.ChatMessage]:
    return [i for i in session.current_agent.chat_ctx.items if isinstance(i, llm.ChatMessage)]


def test_say_interrupts_the_agent_then_schedules_the_text() -> None:
    session = _Session()
    answer = _call(_enabled(session, api_secret=SECRET), _order("say", "Hold on, please."))
    assert answer == {"id": "g1", "status": "applied"}
    assert session.calls == [("interrupt", True), ("say", "Hold on, please.")]
    assert _messages(session) == []


def test_whisper_adds_a_system_message_and_says_nothing() -> None:
    session = _Session()
    answer = _call(_enabled(session, api_secret=SECRET), _order("whisper", "Offer a refund."))
    assert answer == {"id": "g1", "status": "applied"}
    assert session.calls == []
    [message] = _messages(session)
    assert message.role == "system" and message.id == "guidance_g1"
    assert message.text_content == WHISPER_PREFIX + "Offer a refund."


def test_the_secret_defaults_to_the_workers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEKIT_API_SECRET", SECRET)
    session = _Session()
    assert _call(_enabled(session), _order())["status"] == "applied"
    monkeypatch.delenv("LIVEKIT_API_SECRET")
    with pytest.raises(ValueError, match="LIVEKIT_API_SECRET"):
        enable_guidance(_Session(), _Room())  # type: ignore[arg-type]


def _expired() -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "anyreach-guidance", "room": ROOM, "gid": "g1", "mode": "say"}
    claims |= {"text": "hi", "iat": now - 120, "exp": now - 60}
    return json.dumps({"token": jwt.encode(claims, SECRET, algorithm="HS256")})


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("not json", "invalid signature"),
        (json.dumps({"mode": "say", "text": "hi"}), "invalid signature"),  # unsigned
        (
            signing.sign(
                GuidanceOrder("g1", "say", "hi"), room=ROOM, api_key="k", api_secret="x" * 40
            ),
            "invalid signature",
        ),
        (
            signing.sign(
                GuidanceOrder("g1", "say", "hi"), room="other", api_key="k", api_secret=SECRET
            ),
            "another room",
        ),
        (_expired(), "expired"),
    ],
    ids=["garbage", "unsigned", "forged", "other-room", "expired"],
)
def test_anything_but_a_signed_order_is_refused_and_changes_nothing(
    payload: str, reason: str
) -> None:
    session = _Session()
    answer = _call(_enabled(session, api_secret=SECRET), payload)
    assert answer["status"] == "refused" and answer["id"] == ""
    assert reason in answer["reason"], answer
    assert session.calls == [] and _messages(session) == []


def test_a_retried_order_is_acknowledged_again_and_applied_once() -> None:
    session = _Session()
    handler = _enabled(session, api_secret=SECRET)
    payload = _order("say", "Once.")
    assert _call(handler, payload) == _call(handler, payload) == {"id": "g1", "status": "applied"}
    assert session.calls == [("interrupt", True), ("say", "Once.")]


def test_a_session_that_cannot_act_answers_a_reasoned_refusal() -> None:
    session = _Session(failing=True)
    answer = _call(_enabled(session, api_secret=SECRET), _order())
    assert answer["status"] == "refused" and answer["id"] == "g1"
    assert "isn't running" in answer["reason"]


def test_importing_it_loads_nothing_of_the_server() -> None:
    # A customer's worker has no Django settings: the package must stand alone.
    probe = (
        "import sys, anyreach_listen.agent; "
        "print([m for m in sys.modules if m.split('.')[0] in ('django', 'channels', 'daphne') "
        "or (m.startswith('anyreach_listen.') and not m.startswith(('anyreach_listen.agent', "
        "'anyreach_listen.assist')))])"
    )
    env = {"PATH": "/usr/bin:/bin"}  # no DJANGO_SETTINGS_MODULE
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    )
    assert found.stdout.strip() == "[]", found.stdout
