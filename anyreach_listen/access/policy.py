"""Who may see, listen to and manage what: one policy object per person or API caller.

``for_request`` / ``for_user`` build a signed-in person's policy, ``for_api_request`` an
API caller's (from its credential). Every view, the token views, the websocket consumer,
the admin's listen page and the API ask one, so the rules live here only: what a role or
scope may do is the capability table (``roles.py``), which calls a person sees is one SQL
expression (``ConversationQuerySet.visible_to``). A policy is built once and caches what
it reads. Who sees what, PATs included: docs/internals/api-and-access.md.
"""

from __future__ import annotations

import uuid
from functools import cached_property
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import HttpRequest

from anyreach_listen import row_locks
from anyreach_listen.access import credentials, key_cache, ratelimit
from anyreach_listen.access.roles import (
    Capability,
    Role,
    capabilities_of,
    role_has,
    roles_with,
)
from anyreach_listen.api.errors import ApiError, Errors
from anyreach_listen.models import (
    ApiKey,
    Conversation,
    ConversationQuerySet,
    Membership,
    Organization,
    PersonalAccessToken,
    Team,
)

UserLike = AbstractBaseUser | AnonymousUser

ORG_HEADER = "X-Anyreach-Org"
_REQUEST_ATTRIBUTE = "_anyreach_listen_access"


def parse_uuid(value: object) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


class UserAccess:
    """What one signed-in person may do; cheap to ask repeatedly."""

    def __init__(self, user: UserLike) -> None:
        self.user = user

    @cached_property
    def memberships(self) -> dict[uuid.UUID, Membership]:
        """The person's memberships by organization id (one query, organizations joined)."""
        if not self.user.is_authenticated:
            return {}
        rows = Membership.objects.filter(user_id=self.user.pk).select_related("organization")
        return {m.organization_id: m for m in rows}

    @cached_property
    def admin_organization_ids(self) -> frozenset[uuid.UUID]:
        # Visibility, not a capability: admins see their whole organization, as the SQL
        # of ``visible_to`` says.
        return frozenset(o for o, m in self.memberships.items() if m.role == Role.ADMIN)

    def can(self, capability: Capability, organization_id: uuid.UUID) -> bool:
        """Whether the person's role in the organization has ``capability`` (no query
        once ``memberships`` is loaded: events ask this per socket)."""
        membership = self.memberships.get(organization_id)
        return membership is not None and role_has(membership.role, capability)

    def organizations_with(self, capability: Capability) -> frozenset[uuid.UUID]:
        return frozenset(o for o in self.memberships if self.can(capability, o))

    @cached_property
    def teams(self) -> frozenset[tuple[uuid.UUID, uuid.UUID]]:
        """The person's teams as (organization id, team id), each inside its own
        organization (one query)."""
        if not self.user.is_authenticated:
            return frozenset()
        mine = Membership.objects.filter(user_id=self.user.pk)
        rows = Team.objects.of_memberships(mine).values_list("organization_id", "pk")
        return frozenset(rows)

    def sees(self, organization_id: uuid.UUID, team_id: uuid.UUID | None) -> bool:
        """``visible_to`` for one conversation known by its organization and team,
        without a query: events reach many sockets at once."""
        return (
            organization_id in self.admin_organization_ids
            or (organization_id, team_id) in self.teams
        )

    def conversations(self) -> ConversationQuerySet:
        """Every conversation this person may see."""
        if not self.user.is_authenticated:
            return Conversation.objects.none()
        return Conversation.objects.visible_to(self.user.pk).select_related("organization", "team")

    def listenable(self) -> ConversationQuerySet:
        """Every conversation this person may see and listen to."""
        # viewer_role is visible_to's annotation, unknown to the type checker.
        listen_roles = roles_with(Capability.LISTEN)
        return self.conversations().filter(viewer_role__in=listen_roles)  # type: ignore[misc]

    def find(self, conversation_id: object) -> Conversation | None:
        """A visible conversation by id; None for unknown, invisible or not-a-UUID ids."""
        parsed = parse_uuid(conversation_id)
        return self.conversations().filter(pk=parsed).first() if parsed else None

    def _role_for(self, conversation: Conversation) -> str | None:
        """The person's role where ``conversation`` is visible to them, else None."""
        if getattr(conversation, "viewer_id", None) == self.user.pk:
            return conversation.viewer_role  # type: ignore[attr-defined]
        visible = self.find(conversation.pk)
        return visible.viewer_role if visible else None  # type: ignore[attr-defined]

    def _refusal(
        self, conversation: Conversation, capability: Capability, not_member: str, denied: str
    ) -> str | None:
        """Why this person may not use ``capability`` on ``conversation``, or None when
        they may: a membership of its organization, the call visible, the role's grant."""
        if conversation.organization_id not in self.memberships:
            return not_member
        role = self._role_for(conversation)
        if role is None:
            return "This call belongs to a team you are not part of."
        return None if role_has(role, capability) else denied

    def can_on(self, capability: Capability, conversation: Conversation) -> bool:
        """Whether the person may use ``capability`` on this call: a member of its
        organization who sees it (admins: all; others: their teams') with the role's grant."""
        return self._refusal(conversation, capability, "not a member", "role lacks it") is None

    def listen_refusal(self, conversation: Conversation) -> str | None:
        """Why this person may not listen to ``conversation``, or None when they may."""
        return self._refusal(
            conversation,
            Capability.LISTEN,
            "Listening needs a membership of this organization (a role and a team). "
            "Ask an administrator to add you.",
            "Your role can see this call but not listen to it.",
        )

    def can_listen(self, conversation: Conversation) -> bool:
        return self.listen_refusal(conversation) is None

    def reads_transcripts_in(self, organization_id: uuid.UUID) -> bool:
        return self.can(Capability.READ_TRANSCRIPTS, organization_id)

    def transcript_refusal(self, conversation: Conversation) -> str | None:
        """Why this person may not read ``conversation``'s transcript (or its alerts'
        phrases), or None when they may (viewers never do)."""
        return self._refusal(
            conversation,
            Capability.READ_TRANSCRIPTS,
            "Reading transcripts needs a membership of this organization.",
            "Your role can see this call but not read its transcript.",
        )

    def can_read_transcript(self, conversation: Conversation) -> bool:
        return self.transcript_refusal(conversation) is None

    def can_manage(self, organization_id: uuid.UUID) -> bool:
        """Manage members and keys and read the organization's audit (org admins)."""
        return self.can(Capability.MANAGE_ORGANIZATION, organization_id)

    @property
    def audit_fields(self) -> dict[str, Any]:
        """Who a listen session of this person is recorded under."""
        return {"user": self.user if self.user.is_authenticated else None}


def for_user(user: UserLike) -> UserAccess:
    return UserAccess(user)


def for_request(request: HttpRequest) -> UserAccess:
    """The policy of the request's user, built once per request."""
    policy = getattr(request, _REQUEST_ATTRIBUTE, None)
    if policy is None or policy.user is not request.user:
        policy = UserAccess(request.user)
        setattr(request, _REQUEST_ATTRIBUTE, policy)
    return policy


class CredentialAccess:
    """What an API caller may do: its credential, organization and effective scopes.
    ``kept_key``: the row of an API key taken from ``key_cache`` unread, which the mint
    must confirm; None when the credential was read for this request."""

    def __init__(
        self,
        credential: ApiKey | PersonalAccessToken,
        organization: Organization,
        scopes: frozenset[str],
        kept_key: key_cache.KeyRow | None = None,
    ) -> None:
        self.credential = credential
        self.organization = organization
        self.scopes = scopes
        self.kept_key = kept_key

    @property
    def rate_limit_bucket(self) -> str:
        return f"{self.credential.PREFIX}:{self.credential.pk}"

    def conversations(self) -> ConversationQuerySet:
        if isinstance(self.credential, PersonalAccessToken):
            # A PAT sees what its owner sees in the organization it names.
            return Conversation.objects.visible_to(self.credential.user_id, self.organization.pk)
        return Conversation.objects.filter(organization=self.organization)

    def find(self, conversation_id: object, *, lock: bool = False) -> Conversation | None:
        """A visible conversation by id; None for unknown, invisible or not-a-UUID ids.
        ``lock``: its row share-locked (``row_locks``) until the caller's transaction ends."""
        parsed = parse_uuid(conversation_id)
        if parsed is None:
            return None
        # The hot path: no join, no ORDER BY; the caller's organization is the row's.
        rows = self.conversations().filter(pk=parsed).order_by()
        found = row_locks.shared(rows, of=("self",)) if lock else list(rows)
        conversation = found[0] if found else None
        if conversation is not None:
            conversation.organization = self.organization
        return conversation

    @cached_property
    def capabilities(self) -> frozenset[Capability]:
        return capabilities_of(self.scopes)

    def can(self, capability: Capability) -> bool:
        return capability in self.capabilities

    @property
    def can_listen(self) -> bool:
        return self.can(Capability.LISTEN)

    @property
    def audit_fields(self) -> dict[str, Any]:
        if isinstance(self.credential, PersonalAccessToken):
            return {"user": self.credential.user, "personal_access_token": self.credential}
        return {"api_key": self.credential}


def _bearer_token(request: HttpRequest) -> str:
    header = request.headers.get("Authorization")
    if not header:
        raise ApiError(Errors.MISSING_CREDENTIALS)
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise ApiError(
            Errors.INVALID_CREDENTIALS, "The Authorization header must be 'Bearer <token>'."
        )
    return value.strip()


def _authenticate(
    request: HttpRequest, keep: bool
) -> tuple[ApiKey | PersonalAccessToken, key_cache.KeyRow | None]:
    """The request's credential (and, ``keep``, the row of a key kept from an earlier
    check). A client address that sent too many bad ones is refused (429) before any
    lookup; each bad one counts, good ones never do."""
    ratelimit.refuse_blocked_client(request)
    try:
        raw = _bearer_token(request)
        return key_cache.authenticate(raw) if keep else (credentials.authenticate(raw), None)
    except ApiError as exc:
        # No Authorization header at all guesses nothing; a malformed one does.
        if exc.kind is not Errors.MISSING_CREDENTIALS:
            ratelimit.count_failed_credential(request)
        raise
    except credentials.CredentialError as exc:
        ratelimit.count_failed_credential(request)
        raise ApiError(exc.error, exc.message) from None


def for_api_request(request: HttpRequest, *, keep: bool = False) -> CredentialAccess:
    """The caller of an API request; ``ApiError`` (429, 401, 400, 403) when it is refused.
    ``keep``: an API key may come from ``key_cache`` (only where the mint confirms it)."""
    credential, kept_key = _authenticate(request, keep)

    org_header = request.headers.get(ORG_HEADER)
    org_id = parse_uuid(org_header) if org_header else None
    if org_header and org_id is None:
        raise ApiError(Errors.INVALID_ORGANIZATION)

    if isinstance(credential, ApiKey):
        if org_id is not None and org_id != credential.organization_id:
            raise ApiError(Errors.ORGANIZATION_MISMATCH)
        return CredentialAccess(
            credential, credential.organization, frozenset(credential.scopes), kept_key
        )

    if org_id is None:
        raise ApiError(Errors.MISSING_ORGANIZATION)
    membership = (
        Membership.objects.select_related("organization")
        .filter(user_id=credential.user_id, organization_id=org_id)
        .first()
    )
    if membership is None:
        raise ApiError(Errors.NOT_A_MEMBER)
    # A PAT never grants more than its owner's role does in that organization.
    scopes = frozenset(credential.scopes) & membership.scopes
    return CredentialAccess(credential, membership.organization, scopes)
