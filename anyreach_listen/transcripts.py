"""Transcripts: recording a conversation's segments, reading them (audited), and retention.

``record`` is the one writer of segments, for the push API and the recorder alike; it
applies the frame's rules (``js/src/frame/transcripts.ts``), so the stored transcript
is what a listener saw. Reads go through ``read`` and the audit helpers, so reads and
live glances are on record; ``purge`` deletes transcripts past their retention. Rules:
README ("Transcripts and alerts") and docs/internals/recorder.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.cache import cache
from django.db import transaction
from django.db.models import F, Max
from django.http import HttpRequest
from django.utils import timezone

from anyreach_listen import alerts, events
from anyreach_listen.access.client_address import client_address
from anyreach_listen.api.errors import ApiError, Errors
from anyreach_listen.conf import listen_settings
from anyreach_listen.models import (
    Alert,
    Conversation,
    TranscriptRead,
    TranscriptSegment,
    TranscriptVia,
)

logger = logging.getLogger(__name__)

INTERIM_TTL = 60 * 60  # seconds a speaker's interim text is kept without an update
GLANCE_WINDOW = 60 * 60  # seconds one audited glance (or portal read) covers a person's lines


@dataclass(frozen=True)
class SegmentIn:
    """One update of a segment: its whole text so far."""

    id: str
    role: str  # "agent" or "user"
    text: str
    final: bool


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
                if not update.text and not update.final:
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
        """Nothing to take: the segment is final, or an interim repeats the text so
        far or goes backwards (the frame's rule)."""
        if segment.final:
            return True
        if update.final:
            return False
        latest = self._latest(segment.role)
        so_far = segment.text
        if latest is not None and latest.get("id") == segment.segment_id:
            so_far = latest.get("text", so_far)
        return so_far.startswith(update.text)

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


def segments(
    conversation: Conversation, *, after: int = 0, limit: int | None = None
) -> list[SegmentOut]:
    """The transcript in spoken order, each interim segment with its latest text: the
    segments after position ``after``, at most ``limit`` of them (a page of the API)."""
    interims = {role: latest_interim(conversation.pk, role) for role in ("agent", "user")}
    rows = conversation.transcript_segments.filter(position__gt=after).order_by("position")
    if limit is not None:
        rows = rows[:limit]
    out = []
    for s in rows:
        text = s.text
        latest = interims.get(s.role)
        if not s.final and latest is not None and latest.get("id") == s.segment_id:
            text = latest.get("text", text)
        out.append(SegmentOut(s.segment_id, s.role, text, s.final, s.first_seen_at, s.position))
    return out


def read(
    conversation: Conversation,
    *,
    via: str,
    audit: dict[str, Any],
    credential_label: str = "",
    request: HttpRequest | None = None,
) -> list[SegmentOut]:
    """The transcript, after writing the read's audit row (who: ``audit``, a policy's
    ``audit_fields``). Callers check the right to read first (``access.py``)."""
    client_ip = request_ip(request) if request is not None else None
    read_row(
        conversation.pk,
        via=via,
        audit=audit,
        credential_label=credential_label,
        client_ip=client_ip,
    ).save(force_insert=True)
    note_portal_reads(via, audit, [conversation.pk])
    return segments(conversation)


def request_ip(request: HttpRequest) -> str | None:
    return client_address(request)  # never an X-Forwarded-For entry the client wrote


def read_row(
    conversation_id: uuid.UUID,
    *,
    via: str,
    audit: dict[str, Any],
    credential_label: str = "",
    client_ip: str | None = None,
) -> TranscriptRead:
    """A read's audit row, not saved yet (``read`` saves one, others ``bulk_create``)."""
    return TranscriptRead(
        conversation_id=conversation_id,
        via=via,
        credential_label=credential_label,
        client_ip=client_ip or None,
        **audit,
    )


def glance_key(user_pk: object, conversation_id: uuid.UUID | str) -> str:
    """The cache key of a person's audit window for a call; its value is when the
    window opened (``time.time()``), its timeout the window."""
    return f"anyreach_listen:glanced:{user_pk}:{conversation_id}"


def note_portal_reads(
    via: str, audit: dict[str, Any], conversation_ids: Sequence[uuid.UUID | str]
) -> None:
    """A person's audited portal read of these calls covers their glances at them for
    ``GLANCE_WINDOW`` (the conversation page's pushed lines are that read going on)."""
    user = audit.get("user")
    if via != TranscriptVia.PORTAL or user is None or not conversation_ids:
        return
    now = time.time()
    cache.set_many({glance_key(user.pk, c): now for c in conversation_ids}, timeout=GLANCE_WINDOW)


def audit_glances(
    user: AbstractBaseUser | AnonymousUser,
    conversation_ids: Iterable[uuid.UUID | str],
    *,
    client_ip: str | None = None,
) -> dict[str, float]:
    """Audit the live lines of these calls just shown to ``user`` (the event stream's
    final lines and alert phrases, the dashboard's last lines): one ``TranscriptRead`` row, via the
    portal, per call not glanced at (nor read in the portal) by this person within
    ``GLANCE_WINDOW``. One cache read when every call is covered (the common case: no
    query); else one INSERT for the rest. Callers check the right to read first.

    A call is claimed in the cache (``add``, atomic) before its row is written, so two
    sockets of the person seeing the same line at once write one row; a failed INSERT
    releases its claims and raises (the caller then shows nothing).

    Returns when each call's audit window ends (``time.time()`` seconds, by call id as
    a string): until then, lines of the call are covered."""
    if not user.is_authenticated:
        return {}
    keys = {glance_key(user.pk, c): str(c) for c in conversation_ids}
    return _audit_windows(
        keys,
        lambda conversation_id: read_row(
            conversation_id, via=TranscriptVia.PORTAL, audit={"user": user}, client_ip=client_ip
        ),
    )


def api_read_key(reader: str, client_ip: str | None, conversation_id: uuid.UUID | str) -> str:
    """The cache key of a credential's API read window for a call, from one address."""
    return f"anyreach_listen:api-read:{reader}:{client_ip or '-'}:{conversation_id}"


def audit_api_read(
    conversation_id: uuid.UUID,
    *,
    reader: str,
    audit: dict[str, Any],
    credential_label: str,
    request: HttpRequest,
) -> None:
    """Audit an API read of a call's transcript (a page of it) or of its alerts, by the
    glance rule: one ``TranscriptRead`` row, via the API, per credential (``reader``),
    client address and call per ``GLANCE_WINDOW``; later reads in the window are that
    read going on (walking the pages, polling). The address is part of the window so
    that a credential used from a second place is recorded again at once. Raises when
    the row cannot be written (the caller then answers 500 and shows nothing)."""
    client_ip = request_ip(request)
    key = api_read_key(reader, client_ip, conversation_id)
    _audit_windows(
        {key: str(conversation_id)},
        lambda call_id: read_row(
            call_id,
            via=TranscriptVia.API,
            audit=audit,
            credential_label=credential_label,
            client_ip=client_ip,
        ),
    )


def _audit_windows(
    keys: dict[str, str], row: Callable[[uuid.UUID], TranscriptRead]
) -> dict[str, float]:
    """The glance rule: for each audit window (cache key -> call id) not open yet, claim
    it and write ``row(call id)``; one cache read when every window is open, one INSERT
    for the rest. Returns when each call's window ends (``time.time()`` seconds)."""
    if not keys:
        return {}
    now = time.time()
    covered = cache.get_many(list(keys))
    until: dict[str, float] = {}
    claimed: list[str] = []
    for key, conversation_id in keys.items():
        opened = covered.get(key)
        if isinstance(opened, (int, float)):
            until[conversation_id] = opened + GLANCE_WINDOW
            continue
        if cache.add(key, now, timeout=GLANCE_WINDOW):
            claimed.append(key)
        # else another socket or request claimed it a moment ago: its row covers this.
        until[conversation_id] = now + GLANCE_WINDOW
    if claimed:
        rows = [row(uuid.UUID(keys[key])) for key in claimed]
        try:
            TranscriptRead.objects.bulk_create(rows)
        except BaseException:
            cache.delete_many(claimed)
            raise
    return until


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
