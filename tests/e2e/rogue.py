"""A caller that tries to make its words appear as the agent's, for the e2e tests.

It joins a simulated call's room with the token a platform gives a caller (kind
STANDARD, publish and data allowed), under names and attributes that look like
an agent's, publishes a microphone track of its own, and sends transcripts every
way LiveKit carries them. Its LiveKit connection runs on an event loop in a
thread of its own, so a test on Playwright's sync API can drive it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any

from livekit import rtc

from demo.call_simulator import ATTR_FINAL, ATTR_SEGMENT_ID, ATTR_TRACK_ID, TOPIC_TRANSCRIPTION
from tests.support.livekit import LiveKitServer

# Looks like an agent from everything a participant controls about itself.
IDENTITY = "agent"
NAME = "Ava (AI agent)"
ATTRIBUTES = {"lk.agent.state": "speaking", "role": "agent", "lk.publish_on_behalf": "agent-ava"}


class RogueCaller:
    def __init__(self, livekit: LiveKitServer, room_name: str) -> None:
        self.livekit = livekit
        self.room_name = room_name
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.room: rtc.Room | None = None
        self.track_sid = ""

    def run[T](self, coro: Coroutine[Any, Any, T], timeout: float = 20) -> T:
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=timeout)

    def __enter__(self) -> RogueCaller:
        self.thread.start()
        self.run(self._join())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.room is not None:
            self.run(self.room.disconnect())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    async def _join(self) -> None:
        token = self.livekit.token(
            self.room_name,
            IDENTITY,
            kind="standard",
            can_publish=True,
            can_subscribe=True,
            can_publish_data=True,
            can_update_own_metadata=True,
        )
        room = rtc.Room()
        await room.connect(self.livekit.url, token, rtc.RoomOptions(auto_subscribe=False))
        self.room = room
        await room.local_participant.set_name(NAME)
        await room.local_participant.set_attributes(ATTRIBUTES)
        source = rtc.AudioSource(48_000, 1)
        track = rtc.LocalAudioTrack.create_audio_track("agent-voice", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        publication = await room.local_participant.publish_track(track, options)
        self.track_sid = publication.sid

    def track_of(self, identity: str) -> str:
        """The sid of ``identity``'s first published track, as this caller sees it."""

        async def find() -> str:
            assert self.room is not None
            participant = self.room.remote_participants.get(identity)
            publications = list(participant.track_publications) if participant else []
            return publications[0] if publications else ""

        return self.run(find())

    def stream(
        self,
        segment_id: str,
        text: str,
        *,
        track_sid: str | None = None,
        sender_identity: str | None = None,
        deltas: bool = False,
    ) -> None:
        """One ``lk.transcription`` text stream, final, like an agent sends one."""

        async def send() -> None:
            assert self.room is not None
            attributes = {ATTR_SEGMENT_ID: segment_id, ATTR_FINAL: "false" if deltas else "true"}
            if track_sid is not None:
                attributes[ATTR_TRACK_ID] = track_sid
            writer = await self.room.local_participant.stream_text(
                topic=TOPIC_TRANSCRIPTION, attributes=attributes, sender_identity=sender_identity
            )
            words = text.split() if deltas else [text]
            for index, word in enumerate(words):
                await writer.write(word if index == 0 else f" {word}")
            await writer.aclose(attributes={ATTR_FINAL: "true"} if deltas else None)

        self.run(send())

    def legacy(self, segment_id: str, text: str, *, identity: str, track_sid: str) -> None:
        """A legacy transcription naming ``identity``'s track (LiveKit forwards these from
        agents only)."""

        async def send() -> None:
            assert self.room is not None
            segment = rtc.TranscriptionSegment(
                id=segment_id, text=text, start_time=0, end_time=0, language="en", final=True
            )
            await self.room.local_participant.publish_transcription(
                rtc.Transcription(
                    participant_identity=identity, track_sid=track_sid, segments=[segment]
                )
            )

        self.run(send())
