"""What the guidance end-to-end tests and B8 share: an event loop on a thread of its own
for LiveKit participants driven from synchronous code, a hidden listener that timestamps
every audible frame, API keys made in the stack's database, and the guidance API.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from livekit import rtc

from tests.e2e.listener import Listener
from tests.support.stack import Stack

AUDIBLE = 1000  # peak |sample| of real speech (silence and comfort noise stay far below)


class LoopThread:
    """An asyncio loop on a daemon thread: coroutines run there, awaited from sync code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def run[T](self, coro: Coroutine[Any, Any, T], timeout: float = 20) -> T:
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=timeout)

    def __enter__(self) -> LoopThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@dataclass
class TimedListener(Listener):
    """A ``Listener`` that also keeps when each audible frame of each participant arrived
    (``time.monotonic()``)."""

    audible: dict[str, list[float]] = field(default_factory=dict)

    async def _measure(self, track: rtc.Track, identity: str) -> None:
        stream = rtc.AudioStream(track, sample_rate=48_000, num_channels=1)
        try:
            async for event in stream:
                arrived = time.monotonic()
                samples = np.frombuffer(event.frame.data, dtype=np.int16)
                peak = int(np.abs(samples.astype(np.int32)).max()) if samples.size else 0
                self.peak[identity] = max(self.peak.get(identity, 0), peak)
                self.frames[identity] = self.frames.get(identity, 0) + 1
                if peak > AUDIBLE:
                    self.audible.setdefault(identity, []).append(arrived)
        finally:
            await stream.aclose()

    def first_audible_after(self, identity: str, moment: float) -> float | None:
        """When the first audible frame of ``identity`` after ``moment`` arrived."""
        return next((t for t in list(self.audible.get(identity, ())) if t > moment), None)

    def last_audible(self, identity: str) -> float | None:
        times = self.audible.get(identity)
        return times[-1] if times else None


async def connected_listener(url: str, token: str) -> TimedListener:
    """A ``TimedListener`` in the room; run it on the loop that is to serve it (an
    ``rtc.Room`` belongs to the loop it is made on)."""
    listener = TimedListener(url, token)
    await listener.connect()
    return listener


async def new_room() -> rtc.Room:
    """An ``rtc.Room`` of the running loop (made elsewhere, it would take another)."""
    return rtc.Room()


def api_key(stack: Stack, name: str, *scopes: str) -> str:
    """A new API key of the stack's demo organization with ``scopes``; its secret."""
    args = [arg for scope in scopes for arg in ("--scope", scope)]
    return stack.manage("create_api_key", "demo", "--name", name, *args).strip()


def give_guidance(
    stack: Stack, conversation_id: str, key: str, mode: str, text: str
) -> httpx.Response:
    return httpx.post(
        f"{stack.base_url}/core/conversations/{conversation_id}/guidance",
        headers={"Authorization": f"Bearer {key}"},
        json={"mode": mode, "text": text},
        timeout=15,
    )


def get_json(stack: Stack, path: str, key: str) -> httpx.Response:
    return httpx.get(
        f"{stack.base_url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
