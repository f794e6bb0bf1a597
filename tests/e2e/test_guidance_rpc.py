"""Guidance over a real ``livekit-server --dev``: ``perform_rpc`` reaches a method a participant
registered through LiveKit's RoomService.PerformRpc, and ``guidance.give`` finds the call's
agent, sends it the signed order and records what came back.

The agent is a livekit rtc participant with an agent token (kind AGENT, as a livekit-agents
worker joins), on an event loop in a thread of its own, running ``enable_guidance`` with a
stand-in session.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from livekit import rtc

from anyreach_listen.agent import enable_guidance
from anyreach_listen.api.errors import ApiError
from anyreach_listen.assist import guidance, signing
from anyreach_listen.livekit.service import RpcFailed, perform_rpc
from anyreach_listen.models import Guidance, GuidanceStatus
from tests.support.guidance import LoopThread
from tests.support.livekit import LiveKitServer, livekit_server
from tests.support.world import TEST_LISTEN_SETTINGS, World

pytestmark = [
    pytest.mark.e2e,
    # The dev server's secret ("secret") is short; production's is checked (E002).
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

Handler = Callable[[rtc.RpcInvocationData], Any]


class Participant:
    """One participant of a room, driven from synchronous tests."""

    def __init__(self, livekit: LiveKitServer, room: str, identity: str, kind: str) -> None:
        self.livekit, self.room_name, self.identity, self.kind = livekit, room, identity, kind
        self.loop = LoopThread()
        self.room: rtc.Room | None = None
        self.calls: list[rtc.RpcInvocationData] = []

    def run[T](self, coro: Coroutine[Any, Any, T], timeout: float = 20) -> T:
        return self.loop.run(coro, timeout)

    def __enter__(self) -> Participant:
        self.loop.__enter__()
        self.run(self._join())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.room is not None:
            self.run(self.room.disconnect())
        self.loop.__exit__(*exc)

    async def _join(self) -> None:
        token = self.livekit.token(
            self.room_name,
            self.identity,
            kind=self.kind,  # type: ignore[arg-type]
            can_publish=True,
            can_subscribe=True,
            can_publish_data=True,
        )
        self.room = rtc.Room()
        await self.room.connect(self.livekit.url, token, rtc.RoomOptions(auto_subscribe=False))

    def register(self, method: str, handler: Handler) -> None:
        async def recorded(data: rtc.RpcInvocationData) -> str:
            self.calls.append(data)
            answer = handler(data)
            return str(await answer if asyncio.iscoroutine(answer) else answer)

        async def add() -> None:
            assert self.room is not None
            self.room.local_participant.register_rpc_method(method, recorded)

        self.run(add())

    def enable_guidance(self, session: StandInSession, secret: str) -> None:
        """The agent side as shipped: ``anyreach_listen.agent.enable_guidance``."""

        async def enable() -> None:
            assert self.room is not None
            key = self.livekit.api_key
            enable_guidance(session, self.room, api_secret=secret, api_key=key)  # type: ignore[arg-type]

        self.run(enable())


class StandInSession:
    """What ``enable_guidance`` asks of an AgentSession for a ``say``, recorded."""

    def __init__(self) -> None:
        self.said: list[str] = []

    def interrupt(self, *, force: bool = False) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def say(self, text: str) -> None:
        self.said.append(text)


@pytest.fixture(scope="module")
def livekit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveKitServer]:
    log_dir: Path = tmp_path_factory.mktemp("guidance-rpc")
    with livekit_server(log_dir) as server:
        yield server


@pytest.fixture(autouse=True)
def _pointed_at(settings: Any, livekit: LiveKitServer) -> None:
    settings.ANYREACH_LISTEN = {
        **TEST_LISTEN_SETTINGS,
        "LIVEKIT_URL": livekit.url,
        "LIVEKIT_API_KEY": livekit.api_key,
        "LIVEKIT_API_SECRET": livekit.api_secret,
    }


def a_room() -> str:
    return f"guidance-{uuid.uuid4().hex[:8]}"


def test_perform_rpc_reaches_a_registered_method(livekit: LiveKitServer) -> None:
    room = a_room()
    with Participant(livekit, room, "agent-ava", "agent") as agent:
        agent.register("echo", lambda data: f"pong {data.payload}")
        assert perform_rpc(room, "agent-ava", "echo", "ping", timeout_ms=5000) == "pong ping"
        (call,) = agent.calls
        assert call.payload == "ping" and call.method == "echo"


def test_perform_rpc_says_why_it_got_no_answer(livekit: LiveKitServer) -> None:
    room = a_room()
    with Participant(livekit, room, "agent-ava", "agent") as agent:

        async def slow(data: rtc.RpcInvocationData) -> str:
            await asyncio.sleep(3)
            return "late"

        agent.register("slow", slow)
        with pytest.raises(RpcFailed) as unsupported:
            perform_rpc(room, "agent-ava", "not-registered", "x")
        assert unsupported.value.code == 1400, unsupported.value
        assert str(unsupported.value) == "RpcError 1400: Method not supported at destination"
        with pytest.raises(RpcFailed) as late:
            perform_rpc(room, "agent-ava", "slow", "x", timeout_ms=1000)
        assert late.value.code == 1502, late.value  # response timeout
        with pytest.raises(RpcFailed) as nobody:
            perform_rpc(room, "nobody", "slow", "x")
        assert str(nobody.value).startswith("unavailable:"), nobody.value  # no such participant


@pytest.mark.django_db
def test_guidance_reaches_the_calls_agent_and_is_recorded_delivered(
    livekit: LiveKitServer, world: World
) -> None:
    call = world.conversations["in_progress"]
    session = StandInSession()
    text = "Offer the refund now. " + "\N{GRINNING FACE}" * 978  # 1,000 characters
    with (
        Participant(livekit, call.livekit_room or "", "caller", "standard"),
        Participant(livekit, call.livekit_room or "", "agent-ava", "agent") as agent,
    ):
        agent.enable_guidance(session, livekit.api_secret)
        audit = {"user": world.users["supervisor"]}
        given = guidance.give(call, mode="say", text=text, audit=audit)
    row = Guidance.objects.get(pk=given.pk)
    assert row.status == GuidanceStatus.DELIVERED and row.agent_identity == "agent-ava"
    assert row.delivered_at is not None and row.latency_ms is not None
    assert session.said == [text] and len(text) == signing.MAX_TEXT


@pytest.mark.django_db
def test_an_agent_with_another_secret_refuses_and_the_row_says_why(
    livekit: LiveKitServer, world: World
) -> None:
    call = world.conversations["in_progress"]
    session = StandInSession()
    with (
        Participant(livekit, call.livekit_room or "", "agent-ava", "agent") as agent,
        pytest.raises(ApiError) as refused,
    ):
        agent.enable_guidance(session, "another-secret-of-at-least-thirty-two-chars")
        guidance.give(call, mode="say", text="Deny it.", audit={"user": None})
    assert refused.value.code == "guidance_not_delivered"
    row = Guidance.objects.get(conversation=call)
    assert row.status == GuidanceStatus.FAILED and session.said == []
    assert row.reason == "invalid signature: Signature verification failed"


@pytest.mark.django_db
def test_an_agent_without_guidance_support_leaves_a_failed_row(
    livekit: LiveKitServer, world: World
) -> None:
    call = world.conversations["in_progress"]
    with (
        Participant(livekit, call.livekit_room or "", "agent-old", "agent"),
        pytest.raises(ApiError) as refused,
    ):
        guidance.give(call, mode="whisper", text="Be brief.", audit={"user": None})
    assert refused.value.code == "guidance_not_delivered"
    row = Guidance.objects.get(conversation=call)
    assert row.status == GuidanceStatus.FAILED
    assert row.reason == "RpcError 1400: Method not supported at destination"


@pytest.mark.django_db
def test_a_room_without_an_agent_is_agent_not_present(livekit: LiveKitServer, world: World) -> None:
    call = world.conversations["in_progress"]
    with (
        Participant(livekit, call.livekit_room or "", "caller", "standard"),
        pytest.raises(ApiError) as refused,
    ):
        guidance.give(call, mode="say", text="Hello", audit={"user": None})
    assert refused.value.code == "agent_not_present"
    assert not Guidance.objects.exists()
