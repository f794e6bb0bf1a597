"""What the takeover end-to-end tests and B9 share: a supervisor in the room speaking a
steady tone through the takeover token (what a person's microphone would publish), and
the takeover API.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import numpy as np
from livekit import rtc

from tests.support.stack import Stack

RATE = 48_000
FRAME = RATE // 100  # 10 ms
TONE_PEAK = 8_000  # far above tests.support.guidance.AUDIBLE


class Supervisor:
    """A participant joined with a takeover token, publishing its microphone (a 440 Hz
    tone, 10 ms frames at real-time pace) until closed; make and use it on one loop."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.room = rtc.Room()
        self.source = rtc.AudioSource(RATE, 1, queue_size_ms=200)
        self.removed = asyncio.Event()  # LiveKit took it out of the room
        self._speaking: asyncio.Task[None] | None = None

    async def join(self) -> None:
        @self.room.on("disconnected")
        def _gone(reason: int) -> None:
            self.removed.set()

        await self.room.connect(self.url, self.token, rtc.RoomOptions(auto_subscribe=False))
        track = rtc.LocalAudioTrack.create_audio_track("microphone", self.source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await self.room.local_participant.publish_track(track, options)
        self._speaking = asyncio.ensure_future(self._speak())

    async def _speak(self) -> None:
        t = np.arange(FRAME) / RATE
        index = 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            phase = 2 * np.pi * 440 * (t + index * FRAME / RATE)
            samples = (TONE_PEAK * np.sin(phase)).astype(np.int16)
            await self.source.capture_frame(rtc.AudioFrame(samples.tobytes(), RATE, 1, FRAME))
            index += 1
            await asyncio.sleep(max(0.0, start + index * 0.01 - loop.time()))

    async def close(self) -> None:
        if self._speaking is not None:
            self._speaking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._speaking
        await self.room.disconnect()


async def joined_supervisor(url: str, token: str) -> Supervisor:
    """A ``Supervisor`` in the room; run it on the loop that is to serve it."""
    supervisor = Supervisor(url, token)
    await supervisor.join()
    return supervisor


def takeover(stack: Stack, method: str, conversation_id: str, key: str) -> httpx.Response:
    """``POST``, ``GET`` or ``DELETE /core/conversations/{id}/takeover`` with ``key``."""
    return httpx.request(
        method,
        f"{stack.base_url}/core/conversations/{conversation_id}/takeover",
        headers={"Authorization": f"Bearer {key}"},
        timeout=15,
    )
