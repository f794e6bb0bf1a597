"""Data model: organizations and members, conversations, credentials, the listen audit,
transcripts (and their read audit), alert rules and alerts, guidance to the AI agent.

Rows only: events are published by the services that change them (``conversations.py``),
so this module imports no publisher.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, OuterRef, Q, Subquery, Value
from django.db.models.signals import m2m_changed
from django.utils import timezone

from anyreach_listen.access.origins import validate_origin_list
from anyreach_listen.access.roles import ROLE_SCOPES, Role, Scope
from anyreach_listen.assist.signing import MAX_TEXT as MAX_GUIDANCE_TEXT


class Organization(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    allowed_embed_origins = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_origin_list],
        help_text="Origins (scheme://host[:port]) whose pages may embed the listen frame. "
        "Empty: any origin.",
    )
    # Set by staff: the organization's credentials may register only rooms named so.
    room_prefix = models.CharField(
        max_length=100,
        blank=True,
        help_text="Room names this organization's credentials may register start with "
        "this prefix. Empty: any room name not owned by another organization.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TeamQuerySet(models.QuerySet["Team"]):
    def of_memberships(self, memberships: models.QuerySet[Membership]) -> TeamQuerySet:
        """The teams of ``memberships``, each counted only inside its own organization, so a
        team mistakenly attached to another organization's membership grants nothing."""
        return self.filter(
            memberships__in=memberships, organization_id=F("memberships__organization_id")
        )


class Team(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="teams")
    name = models.CharField(max_length=200)

    objects = TeamQuerySet.as_manager()

    class Meta:
        ordering = ["organization__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="unique_team_name")
        ]

    def __str__(self) -> str:
        return f"{self.organization.name} / {self.name}"


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="listen_memberships"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.VIEWER)
    teams = models.ManyToManyField(Team, blank=True, related_name="memberships")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="unique_membership")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"

    @property
    def scopes(self) -> frozenset[str]:
        return ROLE_SCOPES.get(self.role, frozenset())


class ConversationStatus(models.TextChoices):
    TRIGGERED = "triggered", "Triggered"
    RINGING = "ringing", "Ringing"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"


ACTIVE_STATUSES: frozenset[str] = frozenset(
    {ConversationStatus.TRIGGERED, ConversationStatus.RINGING, ConversationStatus.IN_PROGRESS}
)
TERMINAL_STATUSES: frozenset[str] = frozenset(ConversationStatus.values) - ACTIVE_STATUSES
# A call only moves forward; triggered and ringing calls may end without being answered.
NEXT_STATUSES: dict[str, frozenset[str]] = {
    ConversationStatus.TRIGGERED: frozenset(
        {ConversationStatus.RINGING, ConversationStatus.IN_PROGRESS} | TERMINAL_STATUSES
    ),
    ConversationStatus.RINGING: frozenset({ConversationStatus.IN_PROGRESS} | TERMINAL_STATUSES),
    ConversationStatus.IN_PROGRESS: TERMINAL_STATUSES,
}


class ConversationQuerySet(models.QuerySet["Conversation"]):
    def active(self) -> ConversationQuerySet:
        return self.filter(status__in=ACTIVE_STATUSES)

    def in_room(self, room_name: str) -> ConversationQuerySet:
        """The conversations holding ``room_name``: the one rule by which the webhooks and
        the recorder intake find a room's call, as the mint reads the call's room. One
        that lost the room to the organization its metadata names holds it no more."""
        return self.filter(livekit_room=room_name)

    def visible_to(
        self, user_id: int, organization_id: uuid.UUID | None = None
    ) -> ConversationQuerySet:
        """The visibility rule, the only place it is written (``access/policy.py`` asks here).

        A member sees every conversation of an organization where they are an
        admin, and the conversations of their teams elsewhere (``Team.objects.
        of_memberships``). ``organization_id`` narrows the rule to one membership
        (a PAT names its organization). ``UserAccess.sees`` is its row-level form
        for events; a test keeps the two equal.

        Each row carries ``viewer_id`` and ``viewer_role`` (the user's role in the
        conversation's organization), so listen permissions need no query per row.
        """
        memberships = Membership.objects.filter(user_id=user_id)
        if organization_id is not None:
            memberships = memberships.filter(organization_id=organization_id)
        admin_organizations = memberships.filter(role=Role.ADMIN).values("organization_id")
        own_teams = Team.objects.of_memberships(memberships).values("pk")
        role = memberships.filter(organization_id=OuterRef("organization_id")).values("role")
        # A team counts only for its own organization's calls: a conversation of
        # another organization wrongly attached to the team grants nothing.
        of_own_team = Q(team_id__in=own_teams, team__organization_id=F("organization_id"))
        return self.filter(Q(organization_id__in=admin_organizations) | of_own_team).annotate(
            viewer_role=Subquery(role[:1]), viewer_id=Value(user_id)
        )


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="conversations"
    )
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )
    status = models.CharField(
        max_length=20, choices=ConversationStatus.choices, default=ConversationStatus.TRIGGERED
    )
    # Unique among active calls (see Meta): LiveKit may reuse a name once a room is gone.
    # NULL, not "", for "no room": unique constraints ignore NULLs.
    livekit_room = models.CharField(max_length=200, null=True, blank=True, db_index=True)  # noqa: DJ001
    agent_label = models.CharField(max_length=200, blank=True)
    caller_label = models.CharField(max_length=200, blank=True)
    # The platform's own id for the call; registering it twice returns the first one.
    external_id = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # Transcript segments refused past MAX_SEGMENTS_PER_CALL.
    dropped_segments = models.PositiveIntegerField(default=0, editable=False)
    # When the sweep first found the live call's LiveKit room missing (None: seen open,
    # or not looked for yet); past ROOM_GONE_GRACE the call ends (reconciliation.py).
    room_missing_since = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organization", "status"]),
            models.Index(fields=["organization", "-created_at", "-id"], name="conversation_page"),
        ]
        constraints = [
            # One active conversation per LiveKit room, across organizations: a room
            # name handed to a second organization would let it listen to the first.
            models.UniqueConstraint(
                fields=["livekit_room"],
                condition=Q(status__in=sorted(ACTIVE_STATUSES)),
                name="unique_active_room",
            ),
            models.UniqueConstraint(
                fields=["organization", "external_id"],
                condition=Q(external_id__isnull=False),
                name="unique_external_id",
            ),
        ]

    def __str__(self) -> str:
        label = self.caller_label or self.livekit_room or str(self.id)
        return f"{label} ({self.get_status_display()})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def clean(self) -> None:
        if self.team is not None and self.team.organization_id != self.organization_id:
            raise ValidationError({"team": "Pick a team of the conversation's organization."})

    def may_move_to(self, status: str) -> bool:
        return status == self.status or status in NEXT_STATUSES.get(self.status, ())

    def finish(
        self, at: dt.datetime, *, by: str, status: str = ConversationStatus.COMPLETED
    ) -> bool:
        """End the call at ``at`` in ``status`` unless it already ended; False when it had.

        ``by`` (e.g. ``room_finished``) is kept in the metadata. Call it inside a
        transaction on a row locked with ``select_for_update``, so two doors cannot both
        finish the call; the caller publishes the change (``conversations.py``).
        """
        if not self.is_active:
            return False
        self.status = status
        self.ended_at = at
        self.metadata = {**self.metadata, "ended_by": by}
        self.save(update_fields=["status", "ended_at", "metadata", "updated_at"])
        return True


def validate_scopes(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ValidationError("Scopes must be a list of strings.")
    unknown = sorted(set(value) - set(Scope.values))
    if unknown:
        raise ValidationError(f"Unknown scopes: {', '.join(unknown)}.")


class Credential(models.Model):
    """Shared shape of API keys and PATs: only a keyed hash of the secret is stored.

    The plaintext is ``<prefix>_<lookup_id>_<secret>``; ``lookup_id`` finds the row
    and the secret's hash is then compared in constant time (see ``credentials.py``).
    """

    PREFIX = ""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    lookup_id = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list, blank=True, validators=[validate_scopes])
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.name} ({self.PREFIX}_{self.lookup_id}_…)"

    @property
    def display_prefix(self) -> str:
        return f"{self.PREFIX}_{self.lookup_id}_…"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()


class ApiKey(Credential):
    PREFIX = "ak"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_keys"
    )

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]


class PersonalAccessToken(Credential):
    PREFIX = "pat"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="listen_pats"
    )

    class Meta:
        verbose_name = "personal access token"
        ordering = ["-created_at"]
        # Without it, staff with the add permission may issue tokens only for themselves.
        permissions = [("issue_pat_for_others", "Can issue personal access tokens for other users")]


class ListenVia(models.TextChoices):
    API = "api", "API"
    PORTAL = "portal", "Portal"
    ADMIN = "admin", "Admin site"


def disclosure_keys(
    related_name: str,
) -> tuple[
    models.ForeignKey[Any, Any],
    models.ForeignKey[Any, Any],
    models.ForeignKey[Any, Any],
    models.ForeignKey[Any, Any],
]:
    """The call and who (user, API key, PAT) of a ``Disclosure``, declared once; each
    model keeps the reverse accessor it always had (``conversation.listen_sessions``)."""
    return (
        models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name=related_name),
        models.ForeignKey(
            settings.AUTH_USER_MODEL,
            null=True,
            blank=True,
            on_delete=models.SET_NULL,
            related_name=related_name,
        ),
        models.ForeignKey(
            ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name=related_name
        ),
        models.ForeignKey(
            PersonalAccessToken,
            null=True,
            blank=True,
            on_delete=models.SET_NULL,
            related_name=related_name,
        ),
    )


class Disclosure(models.Model):
    """A call disclosed to someone (heard: ``ListenSession``; read: ``TranscriptRead``;
    acted on: ``Guidance``) and who that was, in the same columns (``disclosure.who_columns``
    fills them; the keys come from ``disclosure_keys``)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Who, in words: the audit still names a credential after it is deleted (its foreign
    # key is then null).
    credential_label = models.CharField(max_length=300, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)

    # The keys each model declares with ``disclosure_keys``, as ``who`` reads them.
    user: Any
    user_id: Any
    api_key: Any
    api_key_id: Any

    class Meta:
        abstract = True

    @property
    def who(self) -> str:
        if self.user_id is not None:
            return str(self.user)
        if self.api_key_id is not None:
            return f"API key {self.api_key}"
        return self.credential_label or "unknown"

    @property
    def display_name(self) -> str:
        """Who, as a page names them: an API caller by its credential's words, a person
        by their full name, else their username."""
        if self.credential_label:
            return self.credential_label
        if self.user_id is not None:
            full = getattr(self.user, "get_full_name", lambda: "")()
            return str(full or self.user.get_username())
        return "unknown"


class ListenSessionQuerySet(models.QuerySet["ListenSession"]):
    def revocable(self) -> ListenSessionQuerySet:
        """Unrevoked sessions of calls still going on, including listeners that left:
        their token (or the one LiveKit refreshed) could still rejoin the room."""
        return self.filter(revoked_at__isnull=True, conversation__status__in=ACTIVE_STATUSES)

    def live(self) -> ListenSessionQuerySet:
        """Listeners in a room right now (as far as the webhooks told us)."""
        return self.revocable().filter(left_at__isnull=True)


class ListenSession(Disclosure):
    """Audit row written for every listener token minted; its state changes in
    ``listening/sessions.py`` only."""

    conversation, user, api_key, personal_access_token = disclosure_keys("listen_sessions")

    listener_identity = models.CharField(max_length=100, unique=True)
    via = models.CharField(max_length=10, choices=ListenVia.choices)
    minted_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    user_agent = models.CharField(max_length=500, blank=True)
    joined_at = models.DateTimeField(null=True, blank=True)
    left_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ListenSessionQuerySet.as_manager()

    class Meta:
        ordering = ["-minted_at"]
        indexes = [models.Index(fields=["conversation", "minted_at"])]
        permissions = [("stop_listener", "Can stop a live listener")]

    def __str__(self) -> str:
        return f"{self.listener_identity} on {self.conversation_id}"

    @property
    def listening_seconds(self) -> float | None:
        if self.joined_at is None:
            return None
        end = self.left_at or self.revoked_at or timezone.now()
        return max(0.0, (end - self.joined_at).total_seconds())


def _teams_of_own_organization(
    sender: type, instance: Membership, action: str, pk_set: set[uuid.UUID] | None, **kwargs: object
) -> None:
    """A membership may only hold teams of its own organization."""
    if action != "pre_add" or not pk_set:
        return
    foreign = Team.objects.filter(pk__in=pk_set).exclude(organization_id=instance.organization_id)
    if foreign.exists():
        raise ValidationError("A membership can only include teams of its own organization.")


m2m_changed.connect(
    _teams_of_own_organization,
    sender=Membership.teams.through,
    dispatch_uid="anyreach_listen.membership_teams",
)


# --- transcripts and alerts ------------------------------------------------------------------


class SpeakerRole(models.TextChoices):
    AGENT = "agent", "Agent"
    USER = "user", "Caller"


class TranscriptSegment(models.Model):
    """One segment of a conversation's transcript, written when first seen and when final.

    Interim updates in between live in the cache (``transcripts.py``), so a long
    sentence costs two writes, not one per word.
    """

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="transcript_segments"
    )
    # The platform's (LiveKit's) segment id; with the role, as the frame tells segments
    # apart: a caller reusing the agent's id can neither settle nor hide its segment.
    segment_id = models.CharField(max_length=200)
    role = models.CharField(max_length=10, choices=SpeakerRole.choices)
    text = models.TextField(blank=True)
    final = models.BooleanField(default=False)
    first_seen_at = models.DateTimeField(default=timezone.now)
    final_at = models.DateTimeField(null=True, blank=True)
    # Spoken order: the order segments were first seen in, 1, 2, 3 … per conversation.
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["conversation", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "role", "segment_id"], name="unique_transcript_segment"
            ),
            models.UniqueConstraint(
                fields=["conversation", "position"], name="unique_transcript_position"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} {self.segment_id} on {self.conversation_id}"


class TranscriptVia(models.TextChoices):
    API = "api", "API"
    PORTAL = "portal", "Portal"


class TranscriptRead(Disclosure):
    """Audit row written for every transcript read (``disclosure.py`` writes them all)."""

    conversation, user, api_key, personal_access_token = disclosure_keys("transcript_reads")

    via = models.CharField(max_length=10, choices=TranscriptVia.choices)
    read_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-read_at"]
        indexes = [models.Index(fields=["conversation", "read_at"])]

    def __str__(self) -> str:
        return f"transcript of {self.conversation_id} read {self.read_at:%Y-%m-%d %H:%M}"


class AlertRole(models.TextChoices):
    AGENT = "agent", "Agent"
    USER = "user", "Caller"
    ANY = "any", "Anyone"


class AlertSeverity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class AlertRuleQuerySet(models.QuerySet["AlertRule"]):
    def live(self) -> AlertRuleQuerySet:
        return self.filter(deleted_at__isnull=True)


class AlertRule(models.Model):
    """A phrase that raises an alert when said in a call of the organization (or team).

    Deleting a rule through the API only marks it deleted: the alerts it raised
    keep naming their phrase.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="alert_rules"
    )
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="alert_rules"
    )
    phrase = models.CharField(max_length=200)
    role = models.CharField(max_length=10, choices=AlertRole.choices, default=AlertRole.ANY)
    severity = models.CharField(
        max_length=10, choices=AlertSeverity.choices, default=AlertSeverity.WARNING
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Who created it, in words (a user, an API key or a PAT), kept after they are deleted.
    created_by_label = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = AlertRuleQuerySet.as_manager()

    class Meta:
        ordering = ["organization", "created_at"]

    def __str__(self) -> str:
        return f"{self.phrase!r} ({self.severity})"

    def clean(self) -> None:
        if self.team is not None and self.team.organization_id != self.organization_id:
            raise ValidationError({"team": "Pick a team of the rule's organization."})


class Alert(models.Model):
    """A rule's phrase said in a final segment: once per rule per segment."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="alerts")
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    # Purging a transcript removes its alerts too: they are derived from what was said.
    segment = models.ForeignKey(TranscriptSegment, on_delete=models.CASCADE, related_name="alerts")
    raised_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["raised_at"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "segment"], name="unique_alert_per_segment")
        ]

    def __str__(self) -> str:
        return f"alert {self.rule.phrase!r} on {self.conversation_id}"


# --- guidance to the AI agent ----------------------------------------------------------------


class GuidanceMode(models.TextChoices):
    WHISPER = "whisper", "Whisper"  # private instructions for the agent's next replies
    SAY = "say", "Say now"  # the agent says the text now


class GuidanceStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class Guidance(Disclosure):
    """A supervisor's guidance to a call's AI agent: on record (committed) before it is
    sent; its state changes in ``assist/guidance.py`` only."""

    conversation, user, api_key, personal_access_token = disclosure_keys("guidance")

    mode = models.CharField(max_length=10, choices=GuidanceMode.choices)
    text = models.TextField(max_length=MAX_GUIDANCE_TEXT)
    status = models.CharField(
        max_length=10, choices=GuidanceStatus.choices, default=GuidanceStatus.PENDING
    )
    reason = models.TextField(blank=True)  # why it failed
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    agent_identity = models.CharField(max_length=200, blank=True)

    class Meta:
        verbose_name_plural = "guidance"
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "created_at"])]

    def __str__(self) -> str:
        return f"{self.mode} guidance on {self.conversation_id} ({self.status})"


# --- taking a call over from the AI agent ----------------------------------------------------


class TakeoverEnd(models.TextChoices):
    """How a takeover ended; all but ``call_ended`` resume the agent (``not_paused`` in
    case its pause landed late)."""

    HANDED_BACK = "handed_back", "Handed back"
    LEFT = "left", "The supervisor left the call"
    ACCESS_LOST = "access_lost", "The supervisor lost the right"
    CALL_ENDED = "call_ended", "The call ended"
    EXPIRED = "expired", "The token expired unrenewed"
    NOT_PAUSED = "not_paused", "The agent did not confirm its pause"


class TakeoverQuerySet(models.QuerySet["Takeover"]):
    def held(self) -> TakeoverQuerySet:
        """Takeovers not ended yet: at most one per call (``one_takeover_per_call``)."""
        return self.filter(ended_at__isnull=True)


class Takeover(Disclosure):
    """A supervisor speaking in a call instead of its AI agent, from the pause the agent
    confirmed to the hand-back; its state changes in ``assist/takeover.py`` only."""

    conversation, user, api_key, personal_access_token = disclosure_keys("takeovers")

    identity = models.CharField(max_length=200, unique=True)  # supervisor-…, the participant
    agent_identity = models.CharField(max_length=200)  # the agent paused
    started_at = models.DateTimeField(default=timezone.now)
    paused_at = models.DateTimeField(null=True, blank=True)  # the agent confirmed: tokens from now
    expires_at = models.DateTimeField()  # the latest token's; renewed while held
    joined_at = models.DateTimeField(null=True, blank=True)  # the participant in the room
    left_at = models.DateTimeField(null=True, blank=True)  # …and gone since (webhooks)
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.CharField(max_length=20, choices=TakeoverEnd.choices, blank=True)
    resumed_at = models.DateTimeField(null=True, blank=True)  # the agent confirmed its resume
    resume_error = models.TextField(blank=True)  # why it did not

    objects = TakeoverQuerySet.as_manager()

    class Meta:
        ordering = ["started_at", "id"]
        indexes = [models.Index(fields=["conversation", "started_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation"],
                condition=Q(ended_at__isnull=True),
                name="one_takeover_per_call",
            )
        ]

    def __str__(self) -> str:
        state = self.ended_by or "held"
        return f"takeover of {self.conversation_id} by {self.display_name} ({state})"

    @property
    def participant_name(self) -> str:
        """The name the call's participants (the caller's app, the agent) know the holder
        by: the person's (also through their PAT), else the API key's own name; never a
        credential's key id."""
        if self.user_id is not None:
            full = getattr(self.user, "get_full_name", lambda: "")()
            return str(full or self.user.get_username())
        if self.api_key_id is not None and self.api_key is not None:
            return self.api_key.name
        return "a supervisor"
