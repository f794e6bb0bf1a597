"""End to end with real parts: livekit-server --dev, daphne, the simulated call, a Python listener.

The listener joins with a token minted through the real API and records what a
hidden, subscribe-only participant receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import os
import signal
import uuid
from collections import defaultdict

import jwt
import pytest
from livekit import api, rtc

from anyreach_listen.listening.minting import listener_grants

# run_sync, not asyncio.run: Playwright's sync API may keep a loop running in this thread.
from anyreach_listen.livekit.service import livekit_api, run_sync
from tests.e2e.listener import Heard, Listener
from tests.support.processes import wait_until
from tests.support.stack import Call, Stack, simulated_call

pytestmark = pytest.mark.e2e

READ_SCOPE = "conversations:read_sensitive"


def _identity(token: str) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    return str(claims["sub"])


def _session(stack: Stack, identity: str) -> dict[str, object]:
    rows = stack.query(
        "SELECT joined_at, left_at, revoked_at FROM anyreach_listen_listensession "
        "WHERE listener_identity = ?",
        identity,
    )
    return dict(rows[0]) if rows else {}


def _session_with(stack: Stack, identity: str, *fields: str) -> dict[str, object] | None:
    session = _session(stack, identity)
    return session if session and all(session[f] for f in fields) else None


def _conversation(stack: Stack, conversation_id: str) -> dict[str, object]:
    rows = stack.query(
        "SELECT status, started_at, ended_at, metadata FROM anyreach_listen_conversation "
        "WHERE id = ?",
        uuid.UUID(conversation_id).hex,
    )
    return dict(rows[0]) if rows else {}


def _check_segments(updates: list[Heard], *, one_stream_per_segment: bool) -> int:
    """Interim then final under one id, text only growing, exactly one final.

    Returns how many segments were seen from their first word (interim first).
    """
    by_segment: dict[str, list[Heard]] = defaultdict(list)
    for update in updates:
        by_segment[update.segment_id].append(update)
    complete = 0
    for segment_id, seen in by_segment.items():
        assert segment_id.startswith("SG_")
        finals = [u for u in seen if u.final]
        assert len(finals) <= 1, f"{segment_id} final twice: {finals}"
        if finals:
            assert seen[-1].final, f"{segment_id}: an update came after its final"
        texts = [u.text for u in seen]
        assert all(b.startswith(a) for a, b in itertools.pairwise(texts)), texts
        assert len({u.track_id for u in seen}) == 1
        if one_stream_per_segment:
            assert len(seen) == 1 and seen[0].final, seen
        elif finals and len(seen) > 1:
            complete += 1
    return complete


async def _try_to_publish(listener: Listener, stack: Stack, room: str) -> str:
    """Publishing audio must fail; data and text are dropped by the server (checked later).

    The server ignores a track request without the publish permission, so the SDK's
    ``publish_track`` never completes; the server's view must show no track.
    """
    local = listener.room.local_participant
    source = rtc.AudioSource(48_000, 1)
    track = rtc.LocalAudioTrack.create_audio_track("sneaky", source)
    outcome = "published"
    try:
        await asyncio.wait_for(local.publish_track(track), timeout=5)
    except Exception as exc:
        outcome = type(exc).__name__
    # Data and chat text: the SDK accepts them locally; nobody may receive them.
    for attempt in (
        local.publish_data(b"hello", topic="chat"),
        local.send_text("hello", topic="lk.chat"),
    ):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(attempt, timeout=5)
    async with livekit_api(stack.livekit.http_url, stack.livekit.api_key,
                           stack.livekit.api_secret) as client:  # fmt: skip
        info = await client.room.get_participant(
            api.RoomParticipantIdentity(room=room, identity=local.identity)
        )
    assert not info.tracks, info.tracks
    assert not info.permission.can_publish and not info.permission.can_publish_data
    assert info.permission.hidden
    return outcome


def _finished(call: Call, timeout: float) -> None:
    assert call.wait(timeout=timeout) == 0, call.log()
    assert call.stdout_rest() == b"", "simulate_call --json printed more than its one line"


def test_listener_hears_both_sides_hidden_and_read_only(stack: Stack) -> None:
    key = stack.seed["api_keys"]["read_sensitive"]
    with simulated_call(stack, "--duration", "12") as call:
        response = stack.mint(call.conversation_id, key)
        assert response.status_code == 200, response.text
        grant = response.json()
        assert grant["url"] == stack.livekit.url
        assert grant["room_name"] == call.room_name
        identity = _identity(grant["token"])

        async def listen() -> tuple[Listener, str]:
            listener = Listener(grant["url"], grant["token"])
            await asyncio.wait_for(listener.connect(), timeout=15)
            failures = await _try_to_publish(listener, stack, call.room_name)
            # The call ends by deleting the room, which disconnects the listener.
            await asyncio.wait_for(listener.disconnected.wait(), timeout=60)
            await listener.close()
            return listener, failures

        listener, failures = run_sync(listen())
        _finished(call, timeout=30)

    report = call.report()
    agent, caller = report["agent_identity"], report["caller_identity"]

    # Cannot publish audio, data or text: nothing reached the agent or the caller.
    assert failures != "published", failures
    assert report["data_from"] == {"agent": [], "user": []}, report["data_from"]

    # Hidden: the agent and the caller never saw the listener (they did see each other).
    assert caller in report["seen_by_agent"] and agent in report["seen_by_caller"]
    assert identity not in report["seen_by_agent"]
    assert identity not in report["seen_by_caller"]
    assert not [p for p in report["seen_by_agent"] + report["seen_by_caller"] if "listener" in p]

    # Real audio from both sides.
    assert listener.peak.get(agent, 0) > 1000, listener.peak
    assert listener.peak.get(caller, 0) > 1000, listener.peak

    # Transcripts for both roles, by both paths, interim then final under one id.
    for who, role in ((agent, "agent"), (caller, "user")):
        legacy, stream = listener.of(who, "legacy"), listener.of(who, "stream")
        assert legacy and stream, (who, listener.heard)
        assert {h.segment_id for h in legacy + stream} <= set(report["segments"][role])
        assert _check_segments(legacy, one_stream_per_segment=False) >= 1
        _check_segments(stream, one_stream_per_segment=role == "agent")
        # Both paths describe the same segments, with the same transcribed track.
        legacy_tracks = {h.segment_id: h.track_id for h in legacy}
        for h in stream:
            if h.segment_id in legacy_tracks:
                assert h.track_id == legacy_tracks[h.segment_id]
    user_stream = listener.of(caller, "stream")
    assert any(not h.final for h in user_stream), "no interim full-text stream for the caller"

    # Webhooks: room_finished completed the conversation; the audit has real times.
    wait_until(
        lambda: _conversation(stack, call.conversation_id)["status"] == "completed",
        timeout=10,
        what="conversation completed",
    )
    row = _conversation(stack, call.conversation_id)
    assert json.loads(str(row["metadata"]))["ended_by"] == "room_finished"
    assert row["ended_at"]
    session = wait_until(
        lambda: _session_with(stack, identity, "joined_at", "left_at"),
        timeout=10,
        what="listener joined_at and left_at from webhooks",
    )
    assert str(session["joined_at"]) < str(session["left_at"])


def test_revoking_the_api_key_removes_the_listener(stack: Stack) -> None:
    name = f"revoke-me-{uuid.uuid4().hex[:6]}"
    key = stack.manage("create_api_key", "demo", "--name", name, "--scope", READ_SCOPE).strip()
    with simulated_call(stack, "--loop") as call:
        response = stack.mint(call.conversation_id, key)
        assert response.status_code == 200, response.text
        grant = response.json()
        identity = _identity(grant["token"])
        revoke = (
            "import json\n"
            "from anyreach_listen.models import ApiKey\n"
            "from anyreach_listen.listening.revocation import revoke_credential\n"
            f"key = ApiKey.objects.get(name={name!r})\n"
            "print(json.dumps({'revoked': len(revoke_credential(key))}))\n"
        )

        async def listen_then_revoke() -> tuple[int, int | None]:
            listener = Listener(grant["url"], grant["token"])
            await asyncio.wait_for(listener.connect(), timeout=15)
            await asyncio.wait_for(_until(lambda: bool(listener.heard)), timeout=30)
            out = await asyncio.to_thread(stack.manage, "shell", "-v", "0", "-c", revoke)
            done = json.loads(out.strip().splitlines()[-1])
            # A deadline for a hang, not a measure of the removal's speed.
            await asyncio.wait_for(listener.disconnected.wait(), timeout=10)
            await listener.close()
            return done["revoked"], listener.disconnect_reason

        # One session revoked, and its listener removed by the app (not dropped otherwise).
        revoked, reason = run_sync(listen_then_revoke())
        assert revoked == 1
        assert reason == rtc.DisconnectReason.PARTICIPANT_REMOVED

        session = wait_until(
            lambda: _session_with(stack, identity, "left_at"),
            timeout=10,
            what="left_at from the participant_left webhook",
        )
        assert session["revoked_at"] and session["joined_at"]
        # The key is dead for minting too; the call itself goes on.
        assert stack.mint(call.conversation_id, key).status_code == 401
        assert _conversation(stack, call.conversation_id)["status"] == "in_progress"

        os.killpg(call.proc.pid, signal.SIGTERM)  # Ctrl-C equivalent: clean stop
        _finished(call, timeout=30)
    wait_until(
        lambda: _conversation(stack, call.conversation_id)["status"] == "completed",
        timeout=10,
        what="conversation completed after --loop was stopped",
    )


def test_expired_listener_token_cannot_join(stack: Stack) -> None:
    with simulated_call(stack, "--duration", "3") as call:
        expired = (
            api.AccessToken(stack.livekit.api_key, stack.livekit.api_secret)
            .with_identity(f"listener-{uuid.uuid4()}")
            .with_grants(listener_grants(call.room_name))
            .with_ttl(dt.timedelta(seconds=-120))  # beyond the verifier's leeway
            .to_jwt()
        )

        async def join() -> str:
            room = rtc.Room()
            try:
                await asyncio.wait_for(room.connect(stack.livekit.url, expired), timeout=15)
            except rtc.ConnectError as exc:
                return str(exc)
            await room.disconnect()
            return ""

        error = run_sync(join())
        assert error, "an expired token joined the room"
        # LiveKit's message echoes the whole token: the frame must not pass it on raw.
        assert "401" in error and "token is expired" in error, error
        _finished(call, timeout=30)


async def _until(condition: object) -> None:
    while not condition():  # type: ignore[operator]
        await asyncio.sleep(0.05)
