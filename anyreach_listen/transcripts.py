"""Transcripts: recording a conversation's segments, reading them (audited), and retention.

``record`` is the one writer of segments, for the push API and the recorder alike; it
applies the frame's rule (``recorder/merge.py``'s ``is_news``), so the stored transcript
is what a listener saw. ``read`` puts a read on record (``disclosure.py``) before it
returns the lines; ``purge`` deletes transcripts past their retention. Rules:
docs/api/transcripts.md and docs/internals/recorder.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models import F, Max
from django.http import HttpRequest
from django.utils import timezone

from anyreach_listen import alerts, disclosure, events
from anyreach_listen.api.errors import ApiError, Errors
from anyreach_listen.conf import listen_settings
from anyreach_listen.models import Alert, Conversation, TranscriptSegment
from anyreach_listen.recorder.merge import is_news
from anyreach_listen.recorder.wire import SPEAKER_ROLES

# Documented as importable from here (docs/api/transcripts.md); its home is ``wire``.
from anyreach_listen.recorder.wire import SegmentIn as SegmentIn

logger = logging.getLogger(__name__)

INTERIM_TTL = 60 * 60  # seconds a speaker's interim text is kept without an update


@dataclass(frozen=True)
class SegmentOut:
    id: str
    role: str
    text: str
    final: bool
    at: dt.datetime  # when the segment was first seen
    position: int = 0  # spoken order (1, 2, …): where the API's transcript pages resume


@dataclass
class Recorded:
    """What a ``record`` call changed: updates taken, updates dropped, alerts raised."""

    recorded: int = 0
    unchanged: int = 0
    alerts: list[Alert] = field(default_factory=list)
    dropped_segments: int = 0  # final segments refused past MAX_SEGMENTS_PER_CALL


def interim_key(conversation_id: uuid.UUID | str, role: str) -> str:
    return f"anyreach_listen:interim:{conversation_id}:{role}"


def latest_interim(conversation_id: uuid.UUID | str, role: str) -> dict[str, str] | None:
    """The speaker's latest interim segment, ``{"id", "text"}``, or None."""
    value = cache.get(interim_key(conversation_id, role))
    return value if isinstance(value, dict) else None


def ended_too_long_ago(conversation: Conversation, now: dt.datetime) -> bool:
    if conversation.is_active:
        return False
    ended = conversation.ended_at or conversation.updated_at
    late = dt.timedelta(seconds=int(listen_settings.TRANSCRIPT_LATE_SECONDS))
    return now - ended > late


def record(
    conversation: Conversation, updates: Sequence[SegmentIn], *, at: dt.datetime | None = None
) -> Recorded:
    """Store ``updates`` (in the order given); idempotent by segment.

    ``ApiError`` ``transcript_closed`` when the conversation ended more than
    ``TRANSCRIPT_LATE_SECONDS`` ago.

    A call stores at most ``MAX_SEGMENTS_PER_CALL`` segments (segment ids are the
    sender's to choose: rows and live events would have no bound). Past it, updates of
    new segments are dropped, unpublished (those of stored segments still apply); each
    final one refused adds one to ``Conversation.dropped_segments``, and the first is
    logged. A final refused twice (a second recorder, a repeated push) counts twice.
    """
    at = at or timezone.now()
    quick = _interims_of_known_segments(conversation, updates, at)
    if quick is not None:
        return quick
    with transaction.atomic():
        # The conversation's row lock orders concurrent writers: positions stay
        # unique and gapless, and one update of a segment sees the one before it.
        row = (
            Conversation.objects.select_for_update(of=("self",))
            .select_related("organization", "team")
            .get(pk=conversation.pk)
        )
        batch = _Batch(row, updates, at)
        position = (row.transcript_segments.aggregate(last=Max("position"))["last"] or 0) + 1
        finalized: list[TranscriptSegment] = []
        for update in updates:
            segment = batch.stored.get((update.role, update.id))
            if segment is None:
                if not _is_news(None, update):
                    batch.result.unchanged += 1
                    continue
                if position > int(listen_settings.MAX_SEGMENTS_PER_CALL):
                    # Positions are gapless from 1: the call holds position - 1 segments.
                    batch.result.unchanged += 1
                    batch.result.dropped_segments += update.final
                    continue
                segment = TranscriptSegment.objects.create(
                    conversation=row,
                    segment_id=update.id,
                    role=update.role,
                    text=update.text,
                    final=update.final,
                    first_seen_at=at,
                    final_at=at if update.final else None,
                    position=position,
                )
                position += 1
                batch.stored[(update.role, update.id)] = segment
            elif batch.stale(segment, update):
                batch.result.unchanged += 1
                continue
            elif update.final:
                segment.text, segment.final, segment.final_at = update.text, True, at
                segment.save(update_fields=["text", "final", "final_at"])
            if update.final:
                finalized.append(segment)
                batch.settle(update)
                # Before raise_alerts: on commit, the line reaches browsers before its alerts.
                events.publish_segment(segment, row)
            else:
                batch.take_interim(update)
        batch.result.recorded = len(updates) - batch.result.unchanged
        if batch.result.dropped_segments:
            _count_dropped(row, batch.result.dropped_segments)
        batch.result.alerts = alerts.raise_alerts(row, finalized, at=at)
    # After the writes, so a failed batch leaves the cache as it was.
    batch.store_interims()
    return batch.result


def _count_dropped(row: Conversation, dropped: int) -> None:
    """Add ``dropped`` to the call's count of segments refused past the cap; log the
    first (``row`` is locked and fresh: its count is the stored one)."""
    if not row.dropped_segments:
        logger.warning(
            "Conversation %s reached MAX_SEGMENTS_PER_CALL (%d segments): its new "
            "segments are dropped from now on (counted on dropped_segments)",
            row.pk,
            int(listen_settings.MAX_SEGMENTS_PER_CALL),
        )
    # update(): save() would bump updated_at, which the late window reads.
    Conversation.objects.filter(pk=row.pk).update(dropped_segments=F("dropped_segments") + dropped)
    row.dropped_segments += dropped


def _is_news(so_far: str | None, update: SegmentIn) -> bool:
    """The recorder's rule (``recorder/merge.py``), the one the frame keeps."""
    return is_news(so_far, update.text, update.final)


class _Batch:
    """One ``record`` call's view: the stored segments it names and the speakers'
    interim texts as it leaves them (None: cleared)."""

    def __init__(self, row: Conversation, updates: Sequence[SegmentIn], at: dt.datetime) -> None:
        if ended_too_long_ago(row, at):
            raise ApiError(Errors.TRANSCRIPT_CLOSED)
        self.row = row
        self.stored = {
            (s.role, s.segment_id): s
            for s in TranscriptSegment.objects.filter(
                conversation=row, segment_id__in={u.id for u in updates}
            )
        }
        self.interims: dict[str, dict[str, str] | None] = {}
        self.result = Recorded()

    def _latest(self, role: str) -> dict[str, str] | None:
        if role in self.interims:
            return self.interims[role]
        return latest_interim(self.row.pk, role)

    def stale(self, segment: TranscriptSegment, update: SegmentIn) -> bool:
        """Nothing to take: the segment is final, or the update is no news to the text
        shown so far (the frame's rule, ``_is_news``)."""
        if segment.final:
            return True
        # A final is news whatever came before: no cache read for it.
        so_far = segment.text if update.final else _text_shown(segment, self._latest(segment.role))
        return not _is_news(so_far, update)

    def take_interim(self, update: SegmentIn) -> None:
        self.interims[update.role] = {"id": update.id, "text": update.text}

    def settle(self, update: SegmentIn) -> None:
        latest = self._latest(update.role)
        if latest is not None and latest.get("id") == update.id:
            self.interims[update.role] = None

    def store_interims(self) -> None:
        for role, value in self.interims.items():
            key = interim_key(self.row.pk, role)
            if value is None:
                cache.delete(key)
            else:
                cache.set(key, value, timeout=INTERIM_TTL)


def _interims_of_known_segments(
    conversation: Conversation, updates: Sequence[SegmentIn], at: dt.datetime
) -> Recorded | None:
    """Interim updates of segments already stored touch only the cache: no lock, no
    transaction (most of a live call's updates). None when the batch needs the lock.

    Racing the segment's final, an interim may land in the cache after the final
    cleared it; reads lay interim text only over segments that are not final.
    """
    if any(u.final for u in updates):
        return None
    row = Conversation.objects.filter(pk=conversation.pk).first()
    if row is None:
        return None
    batch = _Batch(row, updates, at)
    if any(u.text and (u.role, u.id) not in batch.stored for u in updates):
        return None
    for update in updates:
        segment = batch.stored.get((update.role, update.id))
        if segment is None or batch.stale(segment, update):
            batch.result.unchanged += 1
        else:
            batch.result.recorded += 1
            batch.take_interim(update)
    batch.store_interims()
    return batch.result


def _text_shown(segment: TranscriptSegment, latest: object) -> str:
    """The segment's text as a reader sees it: one not final yet shows its speaker's
    latest interim text (``latest``, as cached) when that is of this segment."""
    if not segment.final and isinstance(latest, dict) and latest.get("id") == segment.segment_id:
        return latest.get("text", segment.text)
    return segment.text


def _shown(s: TranscriptSegment, latest: object) -> SegmentOut:
    text = _text_shown(s, latest)
    return SegmentOut(s.segment_id, s.role, text, s.final, s.first_seen_at, s.position)


def segments(
    conversation: Conversation, *, after: int = 0, limit: int | None = None
) -> list[SegmentOut]:
    """The transcript in spoken order, each interim segment with its latest text: the
    segments after position ``after``, at most ``limit`` of them (a page of the API)."""
    interims = {role: latest_interim(conversation.pk, role) for role in SPEAKER_ROLES}
    rows = conversation.transcript_segments.filter(position__gt=after).order_by("position")
    if limit is not None:
        rows = rows[:limit]
    return [_shown(s, interims.get(s.role)) for s in rows]


def segments_of(conversations: Sequence[Conversation]) -> dict[uuid.UUID, list[SegmentOut]]:
    """Several calls' transcripts, each as ``segments`` shows it: one query for all their
    segments, one cache read for all their interim texts (the wall's tiles)."""
    keys = {(c.pk, role): interim_key(c.pk, role) for c in conversations for role in SPEAKER_ROLES}
    interims = cache.get_many(list(keys.values()))
    out: dict[uuid.UUID, list[SegmentOut]] = {c.pk: [] for c in conversations}
    rows = TranscriptSegment.objects.filter(conversation__in=conversations).order_by(
        "conversation", "position"
    )
    for s in rows:
        key = keys.get((s.conversation_id, s.role))
        out[s.conversation_id].append(_shown(s, interims.get(key) if key else None))
    return out


def read(
    conversation: Conversation,
    *,
    via: str,
    audit: Mapping[str, Any],
    credential_label: str | None = None,
    request: HttpRequest | None = None,
) -> list[SegmentOut]:
    """The transcript, after its read is on record (``disclosure.record_reads``; who:
    ``audit``, a policy's ``audit_fields``; ``credential_label`` None: the credential's
    own words). Callers check the right to read first (``access/policy.py``)."""
    disclosure.record_reads(
        [conversation.pk],
        via=via,
        audit=audit,
        credential_label=credential_label,
        request=request,
    )
    return segments(conversation)


@dataclass(frozen=True)
class Purged:
    conversations: int
    segments: int
    alerts: int


def purge(now: dt.datetime | None = None) -> Purged:
    """Delete the transcripts (and their alerts) of conversations that ended more than
    ``TRANSCRIPT_RETENTION_DAYS`` ago. Idempotent: a second run finds nothing."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(days=int(listen_settings.TRANSCRIPT_RETENTION_DAYS))
    old = TranscriptSegment.objects.filter(conversation__ended_at__lt=cutoff)
    conversations = old.values("conversation_id").distinct().count()
    _, deleted = old.delete()
    return Purged(
        conversations=conversations,
        segments=deleted.get(TranscriptSegment._meta.label, 0),
        alerts=deleted.get(Alert._meta.label, 0),
    )
