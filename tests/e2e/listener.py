"""A Python ``livekit.rtc`` listener that records what a hidden listener receives."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np
from livekit import rtc

TOPIC = "lk.transcription"


@dataclass(frozen=True)
class Heard:
    """One transcript update as the listener got it."""

    source: str  # "legacy" or "stream"
    participant: str  # identity of the transcribed participant
    segment_id: str
    text: str
    final: bool
    track_id: str


@dataclass
class Listener:
    url: str
    token: str
    room: rtc.Room = field(default_factory=rtc.Room)
    heard: list[Heard] = field(default_factory=list)
    peak: dict[str, int] = field(default_factory=dict)  # identity -> max |sample|
    frames: dict[str, int] = field(default_factory=dict)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    disconnected_at: float | None = None
    disconnect_reason: int | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def connect(self) -> None:
        room = self.room

        @room.on("transcription_received")
        def _legacy(
            segments: list[rtc.TranscriptionSegment],
            participant: rtc.Participant | None,
            publication: rtc.TrackPublication | None,
        ) -> None:
            for seg in segments:
                self.heard.append(
                    Heard(
                        "legacy",
                        participant.identity if participant else "",
                        seg.id,
                        seg.text,
                        seg.final,
                        publication.sid if publication else "",
                    )
                )

        def _stream(reader: rtc.TextStreamReader, sender: str) -> None:
            self._spawn(self._read_stream(reader, sender))

        room.register_text_stream_handler(TOPIC, _stream)

        @room.on("track_subscribed")
        def _track(
            track: rtc.Track, publication: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant
        ) -> None:
            if track.kind == rtc.TrackKind.KIND_AUDIO:
                self._spawn(self._measure(track, p.identity))

        @room.on("disconnected")
        def _gone(reason: int) -> None:
            self.disconnected_at = time.monotonic()
            self.disconnect_reason = reason
            self.disconnected.set()

        await room.connect(self.url, self.token)

    async def _read_stream(self, reader: rtc.TextStreamReader, sender: str) -> None:
        try:
            text = await reader.read_all()
        except rtc.StreamError:  # the room went away mid-stream
            return
        attrs = reader.info.attributes or {}  # the closing attributes are merged in
        self.heard.append(
            Heard(
                "stream",
                sender,
                attrs.get("lk.segment_id", ""),
                text,
                attrs.get("lk.transcription_final") == "true",
                attrs.get("lk.transcribed_track_id", ""),
            )
        )

    async def _measure(self, track: rtc.Track, identity: str) -> None:
        stream = rtc.AudioStream(track, sample_rate=48_000, num_channels=1)
        try:
            async for event in stream:
                samples = np.frombuffer(event.frame.data, dtype=np.int16)
                peak = int(np.abs(samples.astype(np.int32)).max()) if samples.size else 0
                self.peak[identity] = max(self.peak.get(identity, 0), peak)
                self.frames[identity] = self.frames.get(identity, 0) + 1
        finally:
            await stream.aclose()

    def of(self, identity: str, source: str) -> list[Heard]:
        return [h for h in self.heard if h.participant == identity and h.source == source]

    async def close(self) -> None:
        await self.room.disconnect()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
