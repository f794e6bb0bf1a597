"""The recorder's merge of LiveKit's two transcript paths, pure (no LiveKit import).

A recorder in the room (``recorder/agent.py``) hears every segment twice, as legacy
transcription segments and as ``lk.transcription`` text streams. ``Merger`` turns both
into one sequence of whole-text updates per segment, with the frame's rules
(``js/src/frame/transcripts.ts`` and ``speaker.ts``), so the stored transcript is what a
listener saw. Rules and limits: docs/operations/recorder.md and docs/internals/recorder.md.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from anyreach_listen.conf import listen_settings
from anyreach_listen.recorder.wire import MAX_LABEL, MAX_SEGMENT_TEXT, SegmentIn

logger = logging.getLogger(__name__)

TOPIC = "lk.transcription"
ATTR_SEGMENT_ID = "lk.segment_id"
ATTR_FINAL = "lk.transcription_final"  # "true" / "false"
ATTR_TRACK_ID = "lk.transcribed_track_id"
# The attribute LiveKit's server sets on every agent job's participant: the agent
# name the worker registered with (clients cannot set it on an agent's token).
ATTR_AGENT_NAME = "lk.agent_name"
# Seconds between two interims of one segment's text streams: a live view needs no
# more, and a sender of tiny chunks cannot turn each into an update.
INTERIM_INTERVAL = 0.1

Key = tuple[str, str]  # (role, segment id): segments are told apart by both


@dataclass(frozen=True)
class Speaker:
    identity: str
    is_agent: bool

    @property
    def role(self) -> str:
        return "agent" if self.is_agent else "user"


NOBODY = Speaker("", False)  # someone not (or no longer) in the room: the user's side


class Publisher(Protocol):
    """The little of a remote participant the speaker rule needs."""

    @property
    def identity(self) -> str: ...

    @property
    def is_agent(self) -> bool: ...  # LiveKit's participant kind (from its token)

    @property
    def track_sids(self) -> Container[str]: ...


def stream_speaker(
    participants: Mapping[str, Publisher], sender_identity: str, track_sid: str | None
) -> Speaker | None:
    """The speaker of a text stream from ``sender_identity`` naming ``track_sid``; None: drop it."""
    sender = participants.get(sender_identity)
    if sender is None or not sender.is_agent:
        if track_sid and (sender is None or track_sid not in sender.track_sids):
            return None
        return Speaker(sender_identity, False)
    if not track_sid or track_sid in sender.track_sids:
        return Speaker(sender.identity, True)
    for p in participants.values():
        if track_sid in p.track_sids:
            return Speaker(p.identity, p.is_agent)
    # An agent transcribing a track nobody here owns: someone else's speech.
    return NOBODY


def is_final(attributes: Mapping[str, str]) -> bool:
    return attributes.get(ATTR_FINAL) == "true"


def is_news(so_far: str | None, text: str, final: bool) -> bool:
    """The frame's rule for an update of a segment not settled yet (``so_far``: its text
    so far; None: a segment not seen before): whether it is worth recording. A final
    always is; an interim is unless it repeats the text so far or goes backwards, or,
    of a new segment, is empty. ``transcripts.record`` stores by the same rule."""
    if so_far is None:
        return final or bool(text)
    return final or not so_far.startswith(text)


def _key(speaker: Speaker, segment_id: str) -> Key:
    """A segment's key, of bounded size: an id longer than the intake takes (which
    refuses it) is kept as its digest, so a sender's long ids cost no memory."""
    if len(segment_id) <= MAX_LABEL:
        return (speaker.role, segment_id)
    digest = hashlib.sha256(segment_id.encode("utf-8", "surrogatepass")).hexdigest()
    return (speaker.role, f"\x00{len(segment_id)}:{digest}")  # NUL: never a stored id


class Merger:
    """One room's segments as the recorder has seen them so far (at most
    ``max_segments``, by default the portal's ``MAX_SEGMENTS_PER_CALL``)."""

    def __init__(self, max_segments: int | None = None) -> None:
        if max_segments is None:
            max_segments = int(listen_settings.MAX_SEGMENTS_PER_CALL)
        self.max_segments = max_segments
        self.dropped = 0  # updates of new segments dropped past max_segments
        self._open: dict[Key, str] = {}  # a segment not settled yet: its text so far
        self._settled: set[Key] = set()  # a final was emitted: nothing more of it is
        # When a segment's text streams may send their next interim (``stream``): open
        # segments only.
        self._next_interim: dict[Key, float] = {}

    def _tracks(self, key: Key) -> bool:
        """Whether ``key``'s updates may be emitted: a segment tracked already, or room
        for a new one."""
        return (
            key in self._open
            or key in self._settled
            or len(self._open) + len(self._settled) < self.max_segments
        )

    def offer(self, segment_id: str, speaker: Speaker, text: str, final: bool) -> SegmentIn | None:
        """The update worth recording, or None (a repeat, a step back, a settled segment,
        a new segment past ``max_segments``)."""
        key = _key(speaker, segment_id)
        if key in self._settled:
            return None
        previous = self._open.get(key)
        if not is_news(previous, text, final):
            return None
        if previous is None and not self._tracks(key):
            if not self.dropped:
                logger.warning(
                    "A room reached %d transcript segments: the recorder drops its new "
                    "segments from now on (the portal stores no more of a call)",
                    self.max_segments,
                )
            self.dropped += 1
            return None
        if final:
            self._open.pop(key, None)
            self._next_interim.pop(key, None)  # a settled segment has no interims to come
            self._settled.add(key)
        else:
            self._open[key] = text
        return SegmentIn(segment_id, speaker.role, text, final)

    def segments(
        self, speaker: Speaker, segments: Iterable[tuple[str, str, bool]]
    ) -> list[SegmentIn]:
        """Legacy transcription segments ``(id, text, final)``, whole text per update."""
        return [u for s in segments if (u := self.offer(s[0], speaker, s[1], s[2])) is not None]

    async def stream(
        self,
        segment_id: str,
        speaker: Speaker,
        chunks: AsyncIterable[str],
        attributes: Callable[[], Mapping[str, str]],
        *,
        interval: float = INTERIM_INTERVAL,
        limit: int = MAX_SEGMENT_TEXT,
        clock: Callable[[], float] = time.monotonic,
    ) -> AsyncIterator[SegmentIn]:
        """The updates of one ``lk.transcription`` text stream, as its chunks arrive:
        an interim when a chunk comes ``interval`` seconds of ``clock`` or more after the
        segment's previous interim (of any of its streams), then, always, the stream's
        last update (final or not, as its last attributes say) with its whole text, of at
        most ``limit`` characters. Held-back text waits for the next chunk past the
        interval or the stream's end (no timer)."""
        # A stream final from its first attributes carries the whole text at once (user
        # speech): only its end is worth recording.
        final_at_start = is_final(attributes())
        # The agent's speech arrives as deltas: kept as a list and joined only for an
        # update (``text += chunk`` per chunk copies the whole text each time).
        parts: list[str] = []
        size = 0
        key = _key(speaker, segment_id)
        try:
            async for chunk in chunks:
                if size >= limit:
                    continue  # read to the end all the same: an unread stream holds LiveKit's
                chunk = chunk[: limit - size]
                if not chunk:
                    continue
                parts.append(chunk)
                size += len(chunk)
                now = clock()
                if final_at_start or now < self._next_interim.get(key, now):
                    continue
                if key in self._settled or not self._tracks(key):
                    continue  # nothing to emit: only the stream's last update is offered
                parts = ["".join(parts)]
                self._next_interim[key] = now + interval
                if (u := self.offer(segment_id, speaker, parts[0], False)) is not None:
                    yield u
        except Exception as exc:
            logger.warning("A transcript stream broke off: %s", exc)
        # Read again: the final flag may arrive in the stream's trailer. Whatever it says,
        # the stream's last update goes out (the text since its last interim, if any).
        text = "".join(parts)
        final = is_final(attributes())
        if (u := self.offer(segment_id, speaker, text, final)) is not None:
            yield u
