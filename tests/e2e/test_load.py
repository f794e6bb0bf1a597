"""Load with real parts: many hidden listeners on one call, many portal websockets on one worker.

Many listeners minted by our API join one simulated call on a real ``livekit-server``:
each hears and reads both sides, stays hidden and silent, and the call is unaffected.
Many signed-in portal websockets on one daphne worker (the embedded defaults) each get
one signed LiveKit webhook's event exactly once. Counts, not times: nothing here
asserts a latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import numpy as np
import pytest
from livekit import api, rtc

# run_sync, not asyncio.run: Playwright's sync API may keep a loop running in this thread.
from anyreach_listen.livekit.service import livekit_api, run_sync
from tests.e2e.listener import Listener
from tests.support.livekit import sign_webhook, webhook_event
from tests.support.load import seeded_world
from tests.support.processes import daphne_server, free_port, wait_until
from tests.support.stack import Stack, simulated_call

pytestmark = pytest.mark.e2e

LISTENERS = 50
SOCKETS = 500
CONNECT_PARALLEL = 10  # handshakes in flight at once (both tests)
AUDIBLE = 1000  # peak |sample| of real speech (silence and comfort noise stay far below)


# --- 50 listeners on one call ------------------------------------------------------------


class LoadListener(Listener):
    """A ``Listener`` that stops decoding a voice once it heard it loud and clear.

    Fifty listeners decoding two voices each at 100 frames a second would load
    the shared cores enough to stall LiveKit's client handshakes (the FFI gives
    up on a room whose events are not read in time): 100 ms frames at 16 kHz,
    and no decoding after the first loud frame.
    """

    async def _measure(self, track: rtc.Track, identity: str) -> None:
        stream = rtc.AudioStream(track, sample_rate=16_000, num_channels=1, frame_size_ms=100)
        try:
            async for event in stream:
                samples = np.frombuffer(event.frame.data, dtype=np.int16)
                peak = int(np.abs(samples.astype(np.int32)).max()) if samples.size else 0
                self.peak[identity] = max(self.peak.get(identity, 0), peak)
                self.frames[identity] = self.frames.get(identity, 0) + 1
                if self.peak[identity] > AUDIBLE:
                    return
        finally:
            await stream.aclose()


def _identity(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


def _hears_the_call(listener: Listener, agent: str, caller: str) -> bool:
    """Both voices, and at least one final transcript segment of each side."""
    audible = all(listener.peak.get(who, 0) > AUDIBLE for who in (agent, caller))
    finals = {h.participant for h in listener.heard if h.final}
    return audible and {agent, caller} <= finals


async def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


async def _room_participants(stack: Stack, room: str) -> list[api.ParticipantInfo]:
    lk = stack.livekit
    async with livekit_api(lk.http_url, lk.api_key, lk.api_secret) as client:
        listed = await client.room.list_participants(api.ListParticipantsRequest(room=room))
    return list(listed.participants)


def test_50_hidden_listeners_leave_the_call_unaffected(stack: Stack) -> None:
    name = f"load-{uuid.uuid4().hex[:6]}"
    scope = "conversations:read_sensitive"
    key = stack.manage("create_api_key", "demo", "--name", name, "--scope", scope).strip()
    with simulated_call(stack, "--loop") as call:
        grants = [stack.mint(call.conversation_id, key) for _ in range(LISTENERS)]
        assert [g.status_code for g in grants] == [200] * LISTENERS, grants[-1].text
        tokens = [g.json()["token"] for g in grants]
        identities = {_identity(t) for t in tokens}
        assert len(identities) == LISTENERS
        agent = caller = ""

        async def load() -> tuple[list[LoadListener], list[api.ParticipantInfo]]:
            nonlocal agent, caller
            listeners = [LoadListener(stack.livekit.url, token) for token in tokens]
            gate = asyncio.Semaphore(CONNECT_PARALLEL)

            async def join(listener: Listener) -> None:
                async with gate:
                    await asyncio.wait_for(listener.connect(), timeout=60)

            try:
                await asyncio.gather(*(join(listener) for listener in listeners))
                # The call's two parties, as the server lists them (listeners are hidden).
                participants = await _room_participants(stack, call.room_name)
                parties = {p.identity: p for p in participants if p.identity not in identities}
                agent = next(i for i, p in parties.items() if p.kind == api.ParticipantInfo.AGENT)
                caller = next(i for i in parties if i != agent)
                await _until(
                    lambda: all(_hears_the_call(li, agent, caller) for li in listeners),
                    timeout=120,
                    what="every listener hearing both sides and their transcripts",
                )
                # While all 50 are in: the server's view of the room.
                return listeners, await _room_participants(stack, call.room_name)
            finally:
                await asyncio.gather(*(li.close() for li in listeners), return_exceptions=True)

        listeners, participants = run_sync(load())
        call.proc.send_signal(15)  # SIGTERM: the command ends the call cleanly
        assert call.wait(timeout=60) == 0, call.log()

    report = call.report()
    assert (report["agent_identity"], report["caller_identity"]) == (agent, caller)

    # Every listener hidden and silent in the server's view; the two parties still publish.
    by_identity = {p.identity: p for p in participants}
    assert set(by_identity) == identities | {agent, caller}
    for identity in identities:
        info = by_identity[identity]
        assert info.permission.hidden and not info.permission.can_publish, info.permission
        assert not info.permission.can_publish_data and not info.tracks, identity
    for party in (agent, caller):
        audio = [t for t in by_identity[party].tracks if t.type == api.TrackType.AUDIO]
        assert audio and not any(t.muted for t in audio), by_identity[party].tracks

    # The call is unaffected: each side saw only the other, got no data from any
    # listener, and the script ran with transcripts for both roles.
    assert report["seen_by_agent"] == [caller]
    assert report["seen_by_caller"] == [agent]
    assert report["data_from"] == {"agent": [], "user": []}
    assert report["turns"] >= 2 and report["segments"]["agent"] and report["segments"]["user"]
    published = set(report["segments"]["agent"]) | set(report["segments"]["user"])
    for listener in listeners:
        assert {h.segment_id for h in listener.heard} <= published

    # The audit: one session per listener, each joined (webhooks fire for hidden ones too).
    def joined() -> bool:
        rows = stack.query(
            "SELECT listener_identity FROM anyreach_listen_listensession "
            "WHERE conversation_id = ? AND joined_at IS NOT NULL",
            uuid.UUID(call.conversation_id).hex,
        )
        return {row[0] for row in rows} == identities

    wait_until(joined, timeout=30, what="joined_at of every listener from the webhooks")


# --- 500 portal websockets on one worker ------------------------------------------------

WEBHOOK_KEY = "devkey"
WEBHOOK_SECRET = "a-load-test-livekit-secret-of-32-chars"


def _fanout_env(tmp_path: Path) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "tests.support.load_settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": "",  # the embedded default: the in-memory channel layer
        "DEBUG": "0",
        "SECRET_KEY": "load-test-" + "s" * 40,
        "ALLOWED_HOSTS": "127.0.0.1",
        "CREDENTIAL_HASH_KEY": "h" * 40,
        "LIVEKIT_URL": f"ws://127.0.0.1:{free_port()}",
        "LIVEKIT_API_KEY": WEBHOOK_KEY,
        "LIVEKIT_API_SECRET": WEBHOOK_SECRET,
    }


async def _fan_out(base: str, world: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Connect SOCKETS websockets, deliver two webhooks, return what each socket received.

    The second webhook is a fence: messages on one socket arrive in order, so a
    second copy of the first event would arrive before the second event.
    """
    url = base.replace("http://", "ws://") + "/ws/listen/events/"
    headers = {"Cookie": world["session_cookie"]}
    received: list[list[dict[str, Any]]] = [[] for _ in range(SOCKETS)]
    closed: list[int | None] = [None] * SOCKETS
    gate = asyncio.Semaphore(CONNECT_PARALLEL)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def connect(i: int) -> aiohttp.ClientWebSocketResponse:
            async with gate:
                return await session.ws_connect(url, headers=headers, origin=base)

        async def read(i: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    received[i].append(json.loads(message.data))
            closed[i] = ws.close_code

        sockets = await asyncio.gather(*(connect(i) for i in range(SOCKETS)))
        readers = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(sockets)]

        async def webhook(event: str) -> None:
            body = webhook_event(
                event, world["room_name"], identity="agent-1", kind=api.ParticipantInfo.AGENT
            )
            auth = sign_webhook(body, WEBHOOK_KEY, WEBHOOK_SECRET)
            content = {"Authorization": auth, "Content-Type": "application/webhook+json"}
            async with session.post(f"{base}/livekit/webhook", data=body, headers=content) as r:
                assert r.status == 200, await r.text()

        try:
            for count, event in enumerate(("participant_joined", "participant_left"), start=1):
                await webhook(event)

                def everywhere(n: int = count) -> bool:
                    pairs = zip(received, closed, strict=True)
                    return all(len(got) >= n or code is not None for got, code in pairs)

                await _until(everywhere, timeout=60, what=f"webhook {count} on every socket")
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
            for reader in readers:
                reader.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*readers, return_exceptions=True)
    assert closed.count(None) == SOCKETS, f"the server closed sockets: {set(closed)}"
    return received


def test_500_portal_websockets_on_one_worker_each_get_one_event_per_webhook(
    tmp_path: Path,
) -> None:
    env = _fanout_env(tmp_path)
    world = seeded_world(env, keys=0)
    with daphne_server(free_port(), env, log_path=tmp_path / "daphne.log") as base:
        received = run_sync(_fan_out(base, world))

    events = [[(m["type"], m["event"], m["conversation"]["id"]) for m in r] for r in received]
    expected = [
        ("conversation.updated", "agent_joined", world["conversation_id"]),
        ("conversation.updated", "agent_left", world["conversation_id"]),
    ]
    wrong = [i for i, got in enumerate(events) if got != expected]
    assert not wrong, f"{len(wrong)} of {SOCKETS} sockets, e.g. {events[wrong[0]]}"
