"""LiveKit server API helpers (``livekit/service.py``): ``run_sync`` with and without a loop."""

from __future__ import annotations

import asyncio
import concurrent.futures

from anyreach_listen.livekit import service as livekit_service


async def _answer() -> int:
    await asyncio.sleep(0)
    return 42


def test_run_sync_without_a_loop() -> None:
    assert livekit_service.run_sync(_answer()) == 42


def test_run_sync_inside_a_running_loop() -> None:
    async def caller() -> int:
        # Sync code called straight from a coroutine (no sync_to_async in between).
        return livekit_service.run_sync(_answer())

    # In a thread of its own: this test's thread may already run a loop (Playwright).
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(asyncio.run, caller()).result() == 42
