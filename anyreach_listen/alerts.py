"""Alert rules and alerts: a phrase said in a call raises an alert, live.

An organization's rules watch what is said, to warn the people who may see the call.
``transcripts.record`` hands ``raise_alerts`` the segments it has just made final; each
match is stored once as an ``Alert`` and published as ``alert.raised``. Matching rules
and limits: docs/api/transcripts.md ("Alert rules") and docs/internals/recorder.md.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from anyreach_listen.api.errors import ApiError, Errors
from anyreach_listen.conf import listen_settings
from anyreach_listen.events import publish_alert
from anyreach_listen.models import (
    Alert,
    AlertRole,
    AlertRule,
    AlertRuleQuerySet,
    AlertSeverity,
    Conversation,
    Organization,
    Team,
    TranscriptSegment,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# Apostrophes join ("don't" is "dont"); any other punctuation separates words.
_APOSTROPHES = re.compile(r"['\u2019\u02bc`]")
_SEPARATORS = re.compile(r"[\W_]+")


def normalize(text: str) -> str:
    """Lower case (casefolded), punctuation gone, words separated by one space."""
    joined = _APOSTROPHES.sub("", text.casefold())
    return " ".join(_SEPARATORS.sub(" ", joined).split())


def matches(phrase: str, text: str) -> bool:
    """Whether ``phrase`` occurs in ``text`` as whole words, ignoring case and punctuation."""
    wanted = normalize(phrase)
    return bool(wanted) and f" {wanted} " in f" {normalize(text)} "


def valid_phrase(phrase: str) -> bool:
    """A phrase with at least one word (punctuation alone would match nothing)."""
    return bool(normalize(phrase))


def rules_for(conversation: Conversation) -> AlertRuleQuerySet:
    """The live rules that apply to ``conversation``."""
    return AlertRule.objects.live().filter(
        Q(team__isnull=True) | Q(team_id=conversation.team_id),
        organization_id=conversation.organization_id,
    )


def raise_alerts(
    conversation: Conversation,
    segments: Sequence[TranscriptSegment],
    *,
    at: dt.datetime | None = None,
) -> list[Alert]:
    """Alerts for the rules that match ``segments`` (final ones only), new ones only.

    Call inside the transaction that made the segments final; each new alert is
    published when it commits.

    The caller holds the conversation's row lock, so the work here is bounded: at most
    ``MAX_ALERT_RULES`` live rules (``create_rule``), each phrase (≤ 200 characters)
    normalised once per call, each segment's text (≤ ``MAX_SEGMENT_TEXT``, 10,000
    characters) normalised once, then one linear substring search of it per rule: at
    most 200 searches of 10,000 characters per segment (measured: about 2 ms, 7 ms
    with text and phrases built to be slow), and a push carries at most 64 KB of text.
    """
    final = [s for s in segments if s.final]
    if not final:
        return []
    # As ``matches``, normalised once: " phrase " in " text " is on word boundaries. A
    # phrase without words (the admin site could store one) would match anything.
    rules = [
        (rule, f" {wanted} ")
        for rule in rules_for(conversation)
        if (wanted := normalize(rule.phrase))
    ]
    raised: list[Alert] = []
    for segment in final:
        text = f" {normalize(segment.text)} "  # once per segment, whatever the rules
        for rule, phrase in rules:
            if rule.role not in (AlertRole.ANY, segment.role) or phrase not in text:
                continue
            alert, created = Alert.objects.get_or_create(
                rule=rule,
                segment=segment,
                defaults={"conversation": conversation, "raised_at": at or timezone.now()},
            )
            if created:
                raised.append(alert)
                publish_alert(alert, conversation)
    return raised


def create_rule(
    organization: Organization,
    *,
    phrase: str,
    role: str = AlertRole.ANY,
    severity: str = AlertSeverity.WARNING,
    team: Team | None = None,
    created_by: User | None = None,
    created_by_label: str = "",
) -> AlertRule:
    """A new rule; ``ValueError`` for a phrase without words or a team of another
    organization (callers validate first and answer in their own terms); ``ApiError``
    ``too_many_rules`` when the organization has ``MAX_ALERT_RULES`` live rules (every
    final segment of its calls is matched against each, under the call's row lock)."""
    if not valid_phrase(phrase):
        raise ValueError("An alert phrase needs at least one word.")
    if team is not None and team.organization_id != organization.pk:
        raise ValueError("The team belongs to another organization.")
    limit = int(listen_settings.MAX_ALERT_RULES)
    with transaction.atomic():
        # The organization's row lock orders concurrent creators, so two requests at
        # the limit cannot both count 199 and both create (SQLite: one writer anyway).
        list(Organization.objects.select_for_update().filter(pk=organization.pk).values("pk"))
        if AlertRule.objects.live().filter(organization=organization).count() >= limit:
            raise ApiError(
                Errors.TOO_MANY_RULES,
                f"An organization may have at most {limit} active alert rules; delete one first.",
            )
        return AlertRule.objects.create(
            organization=organization,
            team=team,
            phrase=phrase.strip(),
            role=role,
            severity=severity,
            created_by=created_by,
            created_by_label=created_by_label[:300],
        )


def delete_rule(rule: AlertRule) -> AlertRule:
    """Stop the rule matching; its alerts stay (they still name its phrase)."""
    if rule.deleted_at is None:
        rule.deleted_at = timezone.now()
        rule.save(update_fields=["deleted_at"])
    return rule
