"""The conversation page's transcript: catch-up, post-call review and the read audit.

The page view is an audited read that hands the page a *read token*; the page's
refetch when its event stream (re)opens (``conversation_transcript``) sends it back
and, within ``disclosure.READ_CONTINUATION``, continues that read instead of writing
a row per reconnect (``disclosure.portal_read``): at least one row per page view and
per hour a page stays open. Guidance to the agent shows inline (``with_guidance``), and
so do takeovers: "Taken over by Ana" where one started, "Handed back" where it ended
(``takeover_marks``; the live panel gets them from assist.js, the review inline).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_cache_control

from anyreach_listen import disclosure, transcripts
from anyreach_listen.access import policy as access
from anyreach_listen.access.policy import UserAccess
from anyreach_listen.assist import guidance, takeover
from anyreach_listen.models import (
    Alert,
    Conversation,
    Guidance,
    Takeover,
    TakeoverEnd,
    TranscriptRead,
)
from anyreach_listen.transcripts import SegmentOut

READ_HEADER = "X-Anyreach-Read-Token"


@dataclass
class Line:
    """A segment of the transcript with the alerts it raised."""

    segment: SegmentOut
    alerts: list[Alert] = field(default_factory=list)
    offset: str = ""  # time into the call, "m:ss" (empty when the start is unknown)


@dataclass(frozen=True)
class GuidanceLine:
    """Guidance given to the call's agent, shown inline in its transcript (the fields
    ``anyreach_listen/_transcript_lines.html`` reads), taken from its row by ``of``."""

    id: str
    mode: str
    text: str
    status: str
    status_display: str
    reason: str
    author: str
    at: dt.datetime
    offset: str = ""  # time into the call, "m:ss" (empty when the start is unknown)
    is_guidance: bool = True  # how the templates tell it from a segment

    @classmethod
    def of(cls, given: Guidance, offset: str = "") -> GuidanceLine:
        return cls(
            id=str(given.pk),
            mode=given.mode,
            text=given.text,
            status=given.status,
            status_display=given.get_status_display(),
            reason=given.reason,
            author=given.display_name,
            at=given.created_at,
            offset=offset,
        )


class Timed(Protocol):
    @property
    def at(self) -> dt.datetime: ...


@dataclass(frozen=True)
class TakeoverMark:
    """Where a takeover started ("Taken over by Ana") or ended ("Handed back", and how),
    marked in the call's transcript (the fields ``_takeover_mark.html`` reads; assist.js
    builds the same markup from ``takeover.updated``)."""

    id: str  # the takeover's
    edge: str  # "started" or "ended"
    holder: str
    at: dt.datetime
    ended_by: str = ""
    offset: str = ""  # time into the call, "m:ss" (empty when the start is unknown)
    is_takeover: bool = True  # how the templates tell it from a segment

    @property
    def title(self) -> str:
        if self.edge == "started":
            return f"Taken over by {self.holder}"
        return "Takeover ended" if self.ended_by == TakeoverEnd.CALL_ENDED else "Handed back"

    @property
    def how(self) -> str:
        """The end's words (``TakeoverEnd``'s label), with who; "" for a start."""
        if self.edge == "started":
            return ""
        return f"{self.holder} · {TakeoverEnd(self.ended_by).label}"

    @classmethod
    def of(cls, row: Takeover, conversation: Conversation) -> list[TakeoverMark]:
        """The row's marks: its start, and its end once it ended; none for a takeover
        whose pause the agent never confirmed (the caller never heard anyone else)."""
        if row.ended_by == TakeoverEnd.NOT_PAUSED:
            return []
        name, pk = row.display_name, str(row.pk)
        marks = [
            cls(pk, "started", name, row.started_at, "", _offset(conversation, row.started_at))
        ]
        if row.ended_at is not None:
            offset = _offset(conversation, row.ended_at)
            marks.append(cls(pk, "ended", name, row.ended_at, row.ended_by, offset))
        return marks


def interleave[Item, Mark: Timed](
    items: Sequence[Item], at: Callable[[Item], dt.datetime], given: Sequence[Mark]
) -> list[Item | Mark]:
    """``items`` in their order with each guidance (or takeover mark) before the first
    item said after it was given (the rule listen-panel.js and assist.js insert live
    lines by).

    One merge pass over the guidance in time order (stable for equal times): what still
    waits is given no earlier than every item passed, so it goes before the first item
    said after it, even when spoken order is not time order."""
    waiting = sorted(given, key=lambda g: g.at)
    out: list[Item | Mark] = []
    next_up = 0
    for item in items:
        when = at(item)
        while next_up < len(waiting) and waiting[next_up].at < when:
            out.append(waiting[next_up])
            next_up += 1
        out.append(item)
    out.extend(waiting[next_up:])
    return out


def guidance_lines(conversation: Conversation) -> list[GuidanceLine]:
    """The call's guidance (call this only for people who may read its transcript)."""
    return [
        GuidanceLine.of(g, _offset(conversation, g.created_at))
        for g in guidance.for_call(conversation)
    ]


def with_guidance(
    conversation: Conversation, segments: Sequence[SegmentOut]
) -> list[SegmentOut | GuidanceLine]:
    """A panel's recorded lines with the call's guidance inline."""
    return interleave(segments, lambda s: s.at, guidance_lines(conversation))


def takeover_marks(conversation: Conversation) -> list[TakeoverMark]:
    """The call's takeovers as transcript marks, in time order (call this only for
    people who may read its transcript)."""
    marks = [
        m for row in takeover.for_call(conversation) for m in TakeoverMark.of(row, conversation)
    ]
    return sorted(marks, key=lambda m: m.at)


@dataclass
class TranscriptView:
    lines: list[Line]
    alerts: list[Alert]
    read_token: str
    guidance: list[GuidanceLine] = field(default_factory=list)
    # Not among ``entries``: the panel's lines template renders segments and guidance
    # only; the page hands these to assist.js, which puts them in the panel.
    takeovers: list[TakeoverMark] = field(default_factory=list)

    @property
    def segments(self) -> list[SegmentOut]:
        return [line.segment for line in self.lines]

    @property
    def entries(self) -> list[SegmentOut | GuidanceLine]:
        """The live panel's recorded lines, guidance inline."""
        return interleave(self.segments, lambda s: s.at, self.guidance)

    @property
    def review(self) -> list[Line | GuidanceLine | TakeoverMark]:
        """The ended call's review, guidance and takeovers inline."""
        marks: list[GuidanceLine | TakeoverMark] = [*self.guidance, *self.takeovers]
        return interleave(self.lines, lambda line: line.segment.at, marks)


def _read(
    request: HttpRequest, policy: UserAccess, conversation: Conversation, token: str = ""
) -> tuple[list[SegmentOut], str]:
    """The segments and the token to carry on; audited unless ``token`` continues a read."""
    token = disclosure.portal_read(request, policy.audit_fields, conversation.pk, token)
    return transcripts.segments(conversation), token


def _offset(conversation: Conversation, at: dt.datetime) -> str:
    if conversation.started_at is None:
        return ""
    seconds = max(0, int((at - conversation.started_at).total_seconds()))
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}:{seconds:02d}"


def page_transcript(
    request: HttpRequest, policy: UserAccess, conversation: Conversation
) -> TranscriptView | None:
    """The conversation page's transcript and alerts (an audited read), or None for
    people who may not read it (viewers): the page then shows no transcript at all."""
    if not policy.can_read_transcript(conversation):
        return None
    segments, token = _read(request, policy, conversation)
    alerts = list(
        Alert.objects.filter(conversation=conversation)
        .select_related("rule", "segment")
        .order_by("segment__position", "raised_at", "id")  # spoken order
    )
    # An alert names its segment by row; the transcript's segments are (role, id).
    by_segment: dict[tuple[str, str], list[Alert]] = defaultdict(list)
    for alert in alerts:
        by_segment[(alert.segment.role, alert.segment.segment_id)].append(alert)
    lines = [
        Line(s, by_segment.get((s.role, s.id), []), _offset(conversation, s.at)) for s in segments
    ]
    return TranscriptView(
        lines=lines,
        alerts=alerts,
        read_token=token,
        guidance=guidance_lines(conversation),
        takeovers=takeover_marks(conversation),
    )


def reads_for_admins(policy: UserAccess, conversation: Conversation) -> list[TranscriptRead]:
    """The call's latest transcript reads, for org admins only (like the listen audit)."""
    if not policy.can_manage(conversation.organization_id):
        return []
    rows = conversation.transcript_reads.select_related("user", "api_key", "personal_access_token")
    return list(rows.order_by("-read_at")[:20])


@login_required
def conversation_transcript(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """The transcript's lines as a fragment (the page's catch-up when its event stream
    (re)opens). Header ``X-Anyreach-Read-Token``: the page's read token (see the module's
    docstring); a header, not the query, so it stays out of URLs and access logs."""
    policy = access.for_request(request)
    conversation = policy.find(conversation_id)
    if conversation is None:
        raise Http404("No such conversation.")
    if not policy.can_read_transcript(conversation):
        # Same text as the API's refusal would carry, and no transcript.
        return HttpResponse(
            policy.transcript_refusal(conversation), status=403, content_type="text/plain"
        )
    segments, token = _read(request, policy, conversation, request.headers.get(READ_HEADER, ""))
    response = render(
        request,
        "portal/_transcript_fragment.html",
        {
            "segments": with_guidance(conversation, segments),
            "takeovers": takeover_marks(conversation),
            "conversation": conversation,
        },
    )
    response[READ_HEADER] = token
    patch_cache_control(response, no_store=True)  # a transcript: never kept by a cache
    return response


def reads_in(organization_ids: frozenset[uuid.UUID]) -> list[TranscriptRead]:
    """The latest transcript reads of the organizations' calls (the history page's audit
    for org admins; empty for everyone else)."""
    if not organization_ids:
        return []
    rows = TranscriptRead.objects.filter(conversation__organization_id__in=organization_ids)
    rows = rows.select_related("conversation", "user", "api_key", "personal_access_token")
    return list(rows.order_by("-read_at")[:200])
