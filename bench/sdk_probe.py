"""A timestamping agent for bench_sdk.py: it joins the simulated call's room as a
participant of kind AGENT (the server forwards legacy transcriptions only from
agents) and publishes final transcript segments whose text is the wall-clock
time of publishing, so a page can compute "agent publish -> transcript handler"
without any change to the call simulator.

Runs in a thread of its own (``ProbeThread``) with its own event loop: the
benchmark's Playwright sync API owns the main thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

from livekit import rtc

PREFIX = "probe-ts "


def segment_text(epoch_ms: float) -> str:
    return f"{PREFIX}{epoch_ms:.3f}"


def parse_text(text: str) -> float | None:
    """The publish time carried by a probe segment, else None."""
    if not text.startswith(PREFIX):
        return None
    try:
        return float(text[len(PREFIX) :])
    except ValueError:
        return None


async def _send_stream(local: rtc.LocalParticipant, segment_id: str, text: str) -> None:
    """One final segment as a whole-text ``lk.transcription`` stream."""
    writer = await local.stream_text(
        topic="lk.transcription",
        attributes={"lk.segment_id": segment_id, "lk.transcription_final": "true"},
    )
    await writer.write(text)
    await writer.aclose()


async def publish(
    url: str,
    token: str,
    *,
    interval: float,
    stop: threading.Event,
    started: threading.Event,
    stream: bool = False,
) -> int:
    """Publish one timestamped final segment every ``interval`` s until ``stop``; the count.

    ``stream``: as a text stream instead of a legacy transcription, which names no
    track here; livekit's Rust SDK 1.1.21 (the one livekit-agents 1.8.9 pins) panics
    on a legacy transcription with an empty track sid, so the recorder's bench
    (B7) sends streams."""
    room = rtc.Room()
    await room.connect(url, token, rtc.RoomOptions(auto_subscribe=False))
    sent = 0
    try:
        started.set()
        local = room.local_participant
        while not stop.is_set():
            segment_id = f"SG_probe_{uuid.uuid4().hex[:10]}"
            if stream:
                await _send_stream(local, segment_id, segment_text(time.time() * 1000))
                sent += 1
                await asyncio.sleep(interval)
                continue
            segment = rtc.TranscriptionSegment(
                id=segment_id,
                text=segment_text(time.time() * 1000),
                start_time=0,
                end_time=0,
                language="en",
                final=True,
            )
            await local.publish_transcription(
                rtc.Transcription(
                    participant_identity=local.identity, track_sid="", segments=[segment]
                )
            )
            sent += 1
            await asyncio.sleep(interval)
    finally:
        await room.disconnect()
    return sent


class ProbeThread(threading.Thread):
    """``publish`` in a daemon thread: start(), wait_started(), then finish()."""

    def __init__(self, url: str, token: str, interval: float, *, stream: bool = False) -> None:
        super().__init__(name="sdk-probe", daemon=True)
        self.url, self.token, self.interval, self.stream = url, token, interval, stream
        self._stop_event = threading.Event()
        self._started = threading.Event()
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.sent = asyncio.run(
                publish(
                    self.url,
                    self.token,
                    interval=self.interval,
                    stop=self._stop_event,
                    started=self._started,
                    stream=self.stream,
                )
            )
        except BaseException as exc:  # reported by finish()
            self.error = exc
            self._started.set()

    def wait_started(self, timeout: float) -> None:
        if not self._started.wait(timeout):
            raise TimeoutError(f"the probe did not join the room in {timeout}s")
        if self.error is not None:
            raise RuntimeError(f"the probe failed: {self.error!r}")

    def finish(self, timeout: float) -> int:
        self._stop_event.set()
        self.join(timeout)
        if self.is_alive():
            raise TimeoutError(f"the probe did not leave the room in {timeout}s")
        if self.error is not None:
            raise RuntimeError(f"the probe failed: {self.error!r}")
        return self.sent
