"""A call whose room died with its LiveKit server ends: LiveKit is killed (SIGKILL, a crash)
and restarted under a live call whose platform is gone too, so no ``room_finished``
ever comes and nobody opens the room again. ``sweep_listeners`` (reconciliation.py)
sees the room missing, lets ``ROOM_GONE_GRACE`` pass, and the next sweep ends the call
as failed (``room_gone``) and revokes its listeners.

LiveKit is restarted, so this runs on a stack of its own (as ``test_faults.py`` does).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import json
import os
import re
import signal
import time
from collections.abc import Iterator

import pytest
from livekit import api

from tests.support.processes import run_manage, wait_until
from tests.support.stack import Stack, running_stack, simulated_call

pytestmark = pytest.mark.e2e

GRACE = 3  # ROOM_GONE_GRACE of the sweeps below (the default is 60 s)


@pytest.fixture(scope="module")
def restart_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("room-gone")) as running:
        yield running


def _rooms(stack: Stack) -> set[str]:
    """The rooms LiveKit has open."""

    async def rooms() -> set[str]:
        lk = stack.livekit
        async with api.LiveKitAPI(lk.http_url, lk.api_key, lk.api_secret) as client:
            listed = await client.room.list_rooms(api.ListRoomsRequest())
            return {room.name for room in listed.rooms}

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, rooms()).result(timeout=10)


def _call(stack: Stack, conversation_id: str) -> dict[str, str | None]:
    (row,) = stack.query(
        "SELECT status, room_missing_since, updated_at, metadata FROM "
        "anyreach_listen_conversation WHERE id = ?",
        conversation_id.replace("-", ""),
    )
    return dict(row)


def _utc(value: str | None) -> dt.datetime:
    assert value is not None
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def test_a_call_whose_room_died_with_livekit_ends_after_the_grace_and_one_sweep(
    restart_stack: Stack,
) -> None:
    stack, livekit = restart_stack, restart_stack.livekit.process
    assert livekit is not None
    env = {**stack.env, "ROOM_GONE_GRACE": str(GRACE)}
    with simulated_call(stack, "--loop") as call:
        wait_until(lambda: call.room_name in _rooms(stack), timeout=30, what="the call's room")
        minted = stack.mint(call.conversation_id, stack.seed["api_keys"]["read_sensitive"])
        assert minted.status_code == 200, minted.text
        # The room is open: the sweep leaves the call alone. (The seed's in-progress call,
        # whose room never opened, is another matter: the counts include it.)
        assert "whose room is gone" in run_manage(env, "sweep_listeners")
        assert _call(stack, call.conversation_id)["room_missing_since"] is None

        # The platform's process and LiveKit die at once (SIGKILL: no goodbyes), then
        # LiveKit comes back on the same ports, without the room.
        os.killpg(call.proc.pid, signal.SIGKILL)
        call.proc.wait(timeout=10)
        livekit.kill()
        crashed = time.monotonic()
        livekit.start()
        assert call.room_name not in _rooms(stack)

    # First sight of the missing room: the call goes on (the room may come back).
    run_manage(env, "sweep_listeners")
    seen = _call(stack, call.conversation_id)
    assert seen["status"] == "in_progress", seen
    missing_since = _utc(seen["room_missing_since"])

    # The grace passes, counted from that sweep (and from the call's last change).
    def grace_over() -> bool:
        row = _call(stack, call.conversation_id)
        last = max(_utc(row["room_missing_since"]), _utc(row["updated_at"]))
        return dt.datetime.now(dt.UTC) > last + dt.timedelta(seconds=GRACE)

    wait_until(grace_over, timeout=GRACE + 30, interval=0.2, what="the grace to pass")
    out = run_manage(env, "sweep_listeners")
    closed = re.search(r"closed (\d+) call\(s\) whose room is gone", out)
    assert closed and int(closed[1]) >= 1, out
    wait_until(
        lambda: _call(stack, call.conversation_id)["status"] == "failed",
        timeout=10,
        what="the call to end as failed",
    )
    print(
        f"\ncall closed {time.monotonic() - crashed:.1f} s after LiveKit crashed "
        f"(grace {GRACE} s; missing since {missing_since:%H:%M:%S})"
    )
    ended = _call(stack, call.conversation_id)
    assert json.loads(ended["metadata"] or "{}")["ended_by"] == "room_gone", ended
    # The call's listener token can no longer be used in a room of that name.
    revoked = stack.query(
        "SELECT revoked_at FROM anyreach_listen_listensession WHERE conversation_id = ?",
        call.conversation_id.replace("-", ""),
    )
    assert revoked and all(row["revoked_at"] is not None for row in revoked), revoked
