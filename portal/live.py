"""What the dashboard and the wall show of calls in progress: alerts, listeners, lines.

Dashboard rows carry their alert counts, their listener counts and who took the call
over (for people who may see listeners) and, where the user may read the transcript, the
last final line (subqueries
of the one rows query; no line leaves the database for calls they may not read); a
rendered line is a glance, audited by ``disclosure.audit_glances``. Wall tiles open with
the transcript so far (``transcripts.segments_of``), each an audited read.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db.models import (
    BooleanField,
    Case,
    CharField,
    Count,
    DateTimeField,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    TextField,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Concat, NullIf, Trim
from django.http import HttpRequest

from anyreach_listen import disclosure, transcripts
from anyreach_listen.access.policy import UserAccess
from anyreach_listen.access.roles import Capability
from anyreach_listen.models import (
    ACTIVE_STATUSES,
    Alert,
    AlertSeverity,
    Conversation,
    ListenSession,
    Takeover,
    TranscriptSegment,
    TranscriptVia,
)
from anyreach_listen.transcripts import SegmentOut

SEVERITY_RANK = {AlertSeverity.INFO: 1, AlertSeverity.WARNING: 2, AlertSeverity.CRITICAL: 3}


def readable_organizations(policy: UserAccess) -> list[uuid.UUID]:
    """The organizations where the user's role may read transcripts."""
    return [org for org in policy.memberships if policy.reads_transcripts_in(org)]


def _top_severity() -> Subquery:
    """The call's highest alert severity (None without alerts)."""
    rank = Case(
        *(When(rule__severity=s, then=Value(r)) for s, r in SEVERITY_RANK.items()),
        default=Value(0),
        output_field=IntegerField(),
    )
    alerts = Alert.objects.filter(conversation=OuterRef("pk")).annotate(rank=rank)
    return Subquery(alerts.order_by("-rank").values("rule__severity")[:1])


def with_alerts(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """``alert_count`` and ``alert_severity`` on each row (everyone who sees a call sees
    its alerts; what they said is not part of it)."""
    count = (
        Alert.objects.filter(conversation=OuterRef("pk"))
        .order_by()
        .values("conversation")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return conversations.annotate(
        alert_count=Coalesce(Subquery(count, output_field=IntegerField()), 0),
        alert_severity=_top_severity(),
    )


def with_last_line(
    conversations: QuerySet[Conversation], policy: UserAccess
) -> QuerySet[Conversation]:
    """``shows_lines`` (live and readable by the user) and, for those rows only,
    ``last_role``, ``last_text`` and ``last_at`` of the last final segment."""
    readable = readable_organizations(policy)
    if not readable:  # a viewer everywhere: not a word leaves the database
        nothing = {
            "shows_lines": Value(False, output_field=BooleanField()),
            "last_role": Value(None, output_field=CharField()),
            "last_text": Value(None, output_field=TextField()),
            "last_at": Value(None, output_field=DateTimeField()),
        }
        return conversations.annotate(**nothing)
    shown = Q(organization_id__in=readable, status__in=ACTIVE_STATUSES)
    finals = TranscriptSegment.objects.filter(conversation=OuterRef("pk"), final=True).order_by(
        "-position"
    )

    def last(column: str, output: CharField | TextField | DateTimeField) -> Case:
        return Case(
            When(shown, then=Subquery(finals.values(column)[:1])),
            default=Value(None),
            output_field=output,
        )

    return conversations.annotate(
        shows_lines=Case(When(shown, then=Value(True)), default=Value(False)),
        last_role=last("role", CharField()),
        last_text=last("text", TextField()),
        last_at=last("first_seen_at", DateTimeField()),
    )


def with_listeners(
    conversations: QuerySet[Conversation], policy: UserAccess
) -> QuerySet[Conversation]:
    """``listener_count``: who is in each live call's room now, on the rows of
    organizations where the user may see listeners (None elsewhere: viewers)."""
    shown = policy.organizations_with(Capability.SEE_LISTENERS)
    if not shown:
        return conversations.annotate(listener_count=Value(None, output_field=IntegerField()))
    # The rows presence.listeners_now reads: joined, not left, not revoked, call live.
    here = (
        ListenSession.objects.live()
        .filter(conversation=OuterRef("pk"), joined_at__isnull=False)
        .order_by()
        .values("conversation")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return conversations.annotate(
        listener_count=Case(
            When(
                organization_id__in=shown,
                then=Coalesce(Subquery(here, output_field=IntegerField()), 0),
            ),
            default=Value(None),
            output_field=IntegerField(),
        )
    )


def _holder_name() -> Case:
    """``Disclosure.display_name`` in SQL: the credential's words, else the person's full
    name, else their username."""
    full = NullIf(Trim(Concat(F("user__first_name"), Value(" "), F("user__last_name"))), Value(""))
    return Case(
        When(~Q(credential_label=""), then=F("credential_label")),
        When(user__isnull=True, then=Value("unknown")),
        default=Coalesce(full, F("user__username")),
        output_field=CharField(),
    )


def with_takeovers(
    conversations: QuerySet[Conversation], policy: UserAccess
) -> QuerySet[Conversation]:
    """``taken_over_by``: who speaks with the caller instead of the agent now, on the rows
    of organizations where the user may see who is in a call (None elsewhere, and when
    nobody holds it)."""
    shown = policy.organizations_with(Capability.SEE_LISTENERS)
    if not shown:
        return conversations.annotate(taken_over_by=Value(None, output_field=CharField()))
    held = (
        Takeover.objects.held()
        .filter(conversation=OuterRef("pk"))
        .annotate(name=_holder_name())
        .values("name")[:1]
    )
    return conversations.annotate(
        taken_over_by=Case(
            When(organization_id__in=shown, status__in=ACTIVE_STATUSES, then=Subquery(held)),
            default=Value(None),
            output_field=CharField(),
        )
    )


def audit_last_lines(request: HttpRequest, rows: Sequence[Conversation]) -> None:
    """Audit the last lines of ``rows`` (rows of ``with_last_line``) the page shows."""
    shown = [
        c.pk for c in rows if getattr(c, "shows_lines", False) and getattr(c, "last_text", None)
    ]
    if shown:
        disclosure.audit_glances(request.user, shown, client_ip=disclosure.request_ip(request))


@dataclass
class Tile:
    """A wall tile: the call and its transcript so far."""

    conversation: Conversation
    transcript: list[SegmentOut] = field(default_factory=list)


def wall_tiles(
    request: HttpRequest, policy: UserAccess, conversations: Sequence[Conversation]
) -> list[Tile]:
    """Tiles with their history, for calls the user may hear (so may read: the same
    scopes); each tile's history is an audited portal read."""
    calls = [c for c in conversations if policy.reads_transcripts_in(c.organization_id)]
    if not calls:
        return [Tile(c) for c in conversations]
    disclosure.record_reads(
        [c.pk for c in calls], via=TranscriptVia.PORTAL, audit=policy.audit_fields, request=request
    )
    history = transcripts.segments_of(calls)
    return [Tile(c, history.get(c.pk, [])) for c in conversations]
