"""The conversation page's transcript: catch-up, post-call review and the read audit.

Every disclosure of a transcript in the portal is a read (``transcripts.read``
writes a ``TranscriptRead`` row, via "portal"), but a page that stays open
should not write a row each time its event stream reconnects. So:

- the page view is audited once and hands the page a *read token*: a signed
  (user, conversation) pair, stamped with the audited read's time;
- the page refetches the transcript (``conversation_transcript``, a fragment of
  lines) when its event stream (re)opens, to close the gap between the render
  and the socket. A refetch carrying a token of the same person and call less
  than ``READ_CONTINUATION`` old continues that audited read and writes no row
  (the live segments the socket pushes in between are not audited either:
  they are the same read going on); without one, or with an older one, the
  refetch is a read of its own: a row, and a new token.

So an org admin sees at least one row per page view and per hour a page stays
open, never one per reconnect.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from django.contrib.auth.decorators import login_required
from django.core import signing
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from anyreach_listen import transcripts
from anyreach_listen.access import policy as access
from anyreach_listen.access.policy import UserAccess
from anyreach_listen.models import Alert, Conversation, TranscriptRead, TranscriptVia
from anyreach_listen.transcripts import SegmentOut

READ_CONTINUATION = dt.timedelta(hours=1)
_SALT = "portal.transcript-read"
READ_HEADER = "X-Anyreach-Read-Token"


@dataclass
class Line:
    """A segment of the transcript with the alerts it raised."""

    segment: SegmentOut
    alerts: list[Alert] = field(default_factory=list)
    offset: str = ""  # time into the call, "m:ss" (empty when the start is unknown)


@dataclass
class TranscriptView:
    lines: list[Line]
    alerts: list[Alert]
    read_token: str

    @property
    def segments(self) -> list[SegmentOut]:
        return [line.segment for line in self.lines]


def read_token(user_pk: object, conversation_id: uuid.UUID) -> str:
    """A token saying this person was just shown this call's transcript (and audited)."""
    return signing.TimestampSigner(salt=_SALT).sign_object(
        {"u": str(user_pk), "c": str(conversation_id)}
    )


def continues_read(token: str, user_pk: object, conversation_id: uuid.UUID) -> bool:
    """Whether ``token`` is this person's audited read of this call, recent enough."""
    try:
        value = signing.TimestampSigner(salt=_SALT).unsign_object(token, max_age=READ_CONTINUATION)
    except signing.BadSignature:  # also expired (SignatureExpired)
        return False
    return value == {"u": str(user_pk), "c": str(conversation_id)}


def _read(
    request: HttpRequest, policy: UserAccess, conversation: Conversation, token: str = ""
) -> tuple[list[SegmentOut], str]:
    """The segments and the token to carry on; audited unless ``token`` continues a read."""
    if token and continues_read(token, request.user.pk, conversation.pk):
        return transcripts.segments(conversation), token
    segments = transcripts.read(
        conversation, via=TranscriptVia.PORTAL, audit=policy.audit_fields, request=request
    )
    return segments, read_token(request.user.pk, conversation.pk)


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
    return TranscriptView(lines=lines, alerts=alerts, read_token=token)


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
        {"segments": segments, "conversation": conversation},
    )
    response[READ_HEADER] = token
    response["Cache-Control"] = "no-store"  # a transcript: never kept by a cache
    return response


def reads_in(organization_ids: frozenset[uuid.UUID]) -> list[TranscriptRead]:
    """The latest transcript reads of the organizations' calls (the history page's audit
    for org admins; empty for everyone else)."""
    if not organization_ids:
        return []
    rows = TranscriptRead.objects.filter(conversation__organization_id__in=organization_ids)
    rows = rows.select_related("conversation", "user", "api_key", "personal_access_token")
    return list(rows.order_by("-read_at")[:200])
