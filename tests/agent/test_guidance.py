"""anyreach_listen.agent.guidance without LiveKit: what a verified order does to a session,
that nothing else does anything, and what the server records of its answers.

A stand-in room captures the registered RPC handler; a stand-in session records the
calls the handler makes. ``test_example.py`` runs a real AgentSession in a real room.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from livekit import api, rtc
from livekit.agents import llm

from anyreach_listen.agent import enable_guidance
from anyreach_listen.agent.guidance import WHISPER_PREFIX
from anyreach_listen.api.errors import ApiError
from anyreach_listen.assist import guidance, signing
from anyreach_listen.assist.signing import GUIDANCE_METHOD, GuidanceOrder
from anyreach_listen.livekit import service
from anyreach_listen.models import Guidance, GuidanceStatus
from tests.assist.test_guidance import FakeLiveKit, person
from tests.support.world import TEST_LISTEN_SETTINGS, World

SECRET = "an-agent-test-secret-of-at-least-32-chars"
KEY = "agent-test-key"
ROOM = "call-room"
AGENT = "agent-ava"
SERVER_SECRET = TEST_LISTEN_SETTINGS["LIVEKIT_API_SECRET"]
SERVER_KEY = TEST_LISTEN_SETTINGS["LIVEKIT_API_KEY"]

Handler = Callable[[rtc.RpcInvocationData], Coroutine[Any, Any, str]]


@dataclass
class _Participant:
    identity: str = AGENT
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
    interrupt_fails: bool = False

    def interrupt(self, *, force: bool = False) -> asyncio.Future[None]:
        if self.failing:
            raise RuntimeError("AgentSession isn't running")
        self.calls.append(("interrupt", force))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.interrupt_fails:  # as livekit-agents' future does when the speech would not stop
            done.set_exception(RuntimeError("speech could not be interrupted"))
        else:
            done.set_result(None)
        return done

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


def _order(
    mode: str = "say",
    text: str = "Let me transfer you now.",
    gid: str = "g1",
    *,
    identity: str | None = AGENT,
    api_key: str = KEY,
) -> str:
    order = GuidanceOrder(id=gid, mode=mode, text=text)  # type: ignore[arg-type]
    return signing.sign(order, room=ROOM, api_key=api_key, api_secret=SECRET, identity=identity)


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
    monkeypatch.delenv("LIVEKIT_API_KEY", raising=False)
    session = _Session()
    assert _call(_enabled(session), _order())["status"] == "applied"
    monkeypatch.delenv("LIVEKIT_API_SECRET")
    with pytest.raises(ValueError, match="LIVEKIT_API_SECRET"):
        enable_guidance(_Session(), _Room())  # type: ignore[arg-type]


def test_the_api_key_defaults_to_the_workers_environment_and_names_the_issuer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LIVEKIT_API_KEY", KEY)
    handler = _enabled(_Session(), api_secret=SECRET)
    assert _call(handler, _order(gid="g1"))["status"] == "applied"
    refused = _call(handler, _order(gid="g2", api_key="another-key"))
    assert refused == {"id": "g2", "status": "refused", "reason": "signed for another API key"}
    # Given explicitly, it wins over the environment.
    handler = _enabled(_Session(), api_secret=SECRET, api_key="another-key")
    assert _call(handler, _order(gid="g3", api_key="another-key"))["status"] == "applied"


def _expired() -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "anyreach-guidance", "room": ROOM, "gid": "g1", "mode": "say"}
    claims |= {"sha256": signing.text_digest("hi"), "iat": now - 120, "exp": now - 60}
    claims |= {"aud": AGENT, "iss": KEY}
    token = jwt.encode(claims, signing.signing_key(SECRET), algorithm="HS256")
    return json.dumps({"token": token, "text": "hi"})


def _signed(**kwargs: Any) -> str:
    fields = {"room": ROOM, "api_key": KEY, "api_secret": SECRET, "identity": AGENT} | kwargs
    return signing.sign(GuidanceOrder("g1", "say", "hi"), **fields)


# Signed when the test runs, not when it is collected: a long run would expire them.
REFUSED: dict[str, tuple[Callable[[], str], str, str]] = {
    "garbage": (lambda: "not json", "invalid signature", ""),
    "unsigned": (lambda: json.dumps({"mode": "say", "text": "hi"}), "invalid signature", ""),
    "forged": (
        lambda: _signed(api_secret="x" * 40),
        "invalid signature: Signature verification failed",
        "g1",
    ),
    "other-room": (lambda: _signed(room="other"), "another room", "g1"),
    "other-agent": (
        lambda: _signed(identity="agent-other"),
        "addressed to another participant",
        "g1",
    ),
    "no-agent": (lambda: _signed(identity=None), "addressed to another participant", "g1"),
    "other-key": (lambda: _signed(api_key="other"), "signed for another API key", "g1"),
    "expired": (_expired, "expired", "g1"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_anything_but_a_signed_order_is_refused_naming_it_and_changes_nothing(case: str) -> None:
    payload, reason, echoed = REFUSED[case]
    session = _Session()
    answer = _call(_enabled(session, api_secret=SECRET, api_key=KEY), payload())
    assert answer["status"] == "refused" and answer["id"] == echoed, answer
    assert reason in answer["reason"], answer
    assert session.calls == [] and _messages(session) == []


def test_a_retried_order_is_acknowledged_again_and_applied_once() -> None:
    session = _Session()
    handler = _enabled(session, api_secret=SECRET)
    payload = _order("say", "Once.")
    assert _call(handler, payload) == _call(handler, payload) == {"id": "g1", "status": "applied"}
    assert session.calls == [("interrupt", True), ("say", "Once.")]


def test_a_session_that_cannot_act_answers_a_reasoned_refusal_and_a_retry_tries_again() -> None:
    session = _Session(failing=True)
    handler = _enabled(session, api_secret=SECRET)
    answer = _call(handler, _order())
    assert answer["status"] == "refused" and answer["id"] == "g1"
    assert "isn't running" in answer["reason"]
    session.failing = False
    assert _call(handler, _order()) == {"id": "g1", "status": "applied"}
    assert session.calls == [("interrupt", True), ("say", "Let me transfer you now.")]


def test_a_failed_interruption_is_logged_not_left_unretrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    session = _Session(interrupt_fails=True)
    handler = _enabled(session, api_secret=SECRET)

    async def scenario() -> str:
        data = rtc.RpcInvocationData("req", "server", _order(), 5.0, GUIDANCE_METHOD)
        answer = await handler(data)
        await asyncio.sleep(0)  # the done callback runs
        gc.collect()  # an unretrieved exception would be reported now
        return answer

    with caplog.at_level(logging.WARNING):
        answer = json.loads(asyncio.run(scenario()))
    assert answer == {"id": "g1", "status": "applied"}  # the say is still scheduled
    assert session.calls == [("interrupt", True), ("say", "Let me transfer you now.")]
    messages = [r.getMessage() for r in caplog.records]
    assert any("speech could not be interrupted" in m for m in messages), messages
    assert not any("never retrieved" in m for m in messages), messages


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


@pytest.mark.django_db
@pytest.mark.parametrize("agents_secret", ["the server's", "another"])
def test_the_server_records_why_the_real_agent_refused(
    world: World, monkeypatch: pytest.MonkeyPatch, agents_secret: str
) -> None:
    """``guidance.give`` against ``enable_guidance``'s handler (PerformRpc stood in for):
    an agent holding another secret refuses, and the failed row says why."""
    call = world.conversations["in_progress"]
    FakeLiveKit(monkeypatch, [person(AGENT, api.ParticipantInfo.Kind.AGENT)])
    room, session = _Room(name=call.livekit_room or ""), _Session()
    secret = SERVER_SECRET if agents_secret == "the server's" else "another-" + SECRET
    enable_guidance(session, room, api_secret=secret, api_key=SERVER_KEY)  # type: ignore[arg-type]
    handler = room.local_participant.handlers[GUIDANCE_METHOD]

    def perform_rpc(room_name: str, identity: str, method: str, payload: str, **_: Any) -> str:
        assert (room_name, identity) == (room.name, room.local_participant.identity)
        return asyncio.run(handler(rtc.RpcInvocationData("req", "", payload, 5.0, method)))

    monkeypatch.setattr(service, "perform_rpc", perform_rpc)
    audit = {"user": world.users["supervisor"]}
    if agents_secret == "the server's":
        guidance.give(call, mode="say", text="One moment, please.", audit=audit)
        assert session.calls == [("interrupt", True), ("say", "One moment, please.")]
        assert Guidance.objects.get().status == GuidanceStatus.DELIVERED
        return
    with pytest.raises(ApiError) as refused:
        guidance.give(call, mode="say", text="One moment, please.", audit=audit)
    assert refused.value.code == "guidance_not_delivered"
    row = Guidance.objects.get()
    assert row.status == GuidanceStatus.FAILED
    assert row.reason == "invalid signature: Signature verification failed"
    assert session.calls == []
