"""The conversation page's transcript: catch-up, post-call review and the read audit.

The page view is an audited read that hands the page a *read token*; the page's
refetch when its event stream (re)opens (``conversation_transcript``) sends it back
and, within ``disclosure.READ_CONTINUATION``, continues that read instead of writing
a row per reconnect (``disclosure.portal_read``): at least one row per page view and
per hour a page stays open. Guidance to the agent shows inline (``with_guidance``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_cache_control

from anyreach_listen import disclosure, transcripts
from anyreach_listen.access import policy as access
from anyreach_listen.access.policy import UserAccess
from anyreach_listen.assist import guidance
from anyreach_listen.models import Alert, Conversation, Guidance, TranscriptRead
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


def interleave[Item](
    items: Sequence[Item], at: Callable[[Item], dt.datetime], given: Sequence[GuidanceLine]
) -> list[Item | GuidanceLine]:
    """``items`` in their order with each guidance before the first item said after it
    was given (the rule listen-panel.js and assist.js insert live lines by).

    One merge pass over the guidance in time order (stable for equal times): what still
    waits is given no earlier than every item passed, so it goes before the first item
    said after it, even when spoken order is not time order."""
    waiting = sorted(given, key=lambda g: g.at)
    out: list[Item | GuidanceLine] = []
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


@dataclass
class TranscriptView:
    lines: list[Line]
    alerts: list[Alert]
    read_token: str
    guidance: list[GuidanceLine] = field(default_factory=list)

    @property
    def segments(self) -> list[SegmentOut]:
        return [line.segment for line in self.lines]

    @property
    def entries(self) -> list[SegmentOut | GuidanceLine]:
        """The live panel's recorded lines, guidance inline."""
        return interleave(self.segments, lambda s: s.at, self.guidance)

    @property
    def review(self) -> list[Line | GuidanceLine]:
        """The ended call's review, guidance inline."""
        return interleave(self.lines, lambda line: line.segment.at, self.guidance)


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
        lines=lines, alerts=alerts, read_token=token, guidance=guidance_lines(conversation)
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
        {"segments": with_guidance(conversation, segments), "conversation": conversation},
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
