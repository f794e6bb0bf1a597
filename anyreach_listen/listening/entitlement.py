"""Whether a listen session is still backed by a right to listen: its API key, or its
holder's PAT and membership, re-read under row locks (``refusal``) so that a mint and a
revocation cannot miss each other. Which rows take a shared lock and which an exclusive
one, and why: docs/internals/api-and-access.md ("Locks of the mint's re-check").
"""

from __future__ import annotations

import copy

from django.contrib.auth import get_user_model
from django.utils import timezone

from anyreach_listen import row_locks
from anyreach_listen.access import key_cache
from anyreach_listen.access import policy as access
from anyreach_listen.access.roles import can_listen
from anyreach_listen.models import (
    ApiKey,
    Conversation,
    Credential,
    ListenSession,
    Membership,
    PersonalAccessToken,
)

CREDENTIAL_GONE = "The credential this listen was granted under was revoked, expired or deleted."
OWNER_INACTIVE = "The account this listen was granted to is no longer active."
SCOPE_GONE = "The credential this listen was granted under may no longer listen."


def usable(credential: Credential | None) -> bool:
    """Neither revoked nor expired (None: deleted)."""
    if credential is None or credential.revoked_at is not None:
        return False
    return credential.expires_at is None or credential.expires_at > timezone.now()


def policy_of(user_id: int, *, lock: bool = True) -> access.UserAccess | None:
    """The person's access as their memberships say now; None when the account is gone
    or inactive. ``lock``: the memberships read under a row lock. They are what access
    changes touch (role, teams, deletion) and a revocation locks them too, so the two
    cannot interleave; a reader that holds other locks first reads without (the order
    of locks must be one)."""
    rows = Membership.objects.filter(user_id=user_id)
    if lock:
        # Exclusive, not row_locks.shared: some access changes (a team left, the account
        # deactivated) write other rows than these, and the revocation after them must
        # wait here for a mint in flight to commit its session.
        rows = rows.select_for_update(of=("self",))
    memberships = list(rows.select_related("user", "organization"))
    user = (
        memberships[0].user if memberships else get_user_model().objects.filter(pk=user_id).first()
    )
    if user is None or not user.is_active:
        return None
    policy = access.for_user(user)
    # cached_property: the memberships just read are the policy's.
    policy.__dict__["memberships"] = {m.organization_id: m for m in memberships}
    return policy


def without_visibility(conversation: Conversation) -> Conversation:
    """The caller's copy may carry ``visible_to``'s annotations, read before the lock;
    without them the policy asks the database again."""
    plain = copy.copy(conversation)
    for annotation in ("viewer_id", "viewer_role"):
        plain.__dict__.pop(annotation, None)
    return plain


# What an API mint's re-check reads of its key: a kept key's row starts with them.
API_KEY_COLUMNS = key_cache.KeyRow.COLUMNS[:4]  # revoked_at, expires_at, organization_id, scopes


def refusal(session: ListenSession, *, kept_key: key_cache.KeyRow | None = None) -> str | None:
    """Why ``session``'s holder may no longer listen to its call, or None.

    Call inside a transaction: the rows read are locked until it ends. ``kept_key``: the
    row the session's API key was checked as (``key_cache``); ``key_cache.Stale`` when
    the key's row is no longer that.
    """
    conversation = session.conversation
    if session.api_key_id is not None:
        # The hot path (every API mint): the columns it needs, no ORDER BY; with a kept
        # key, the rest of those it was checked with (its organization's read, not locked).
        columns = key_cache.KeyRow.COLUMNS if kept_key else API_KEY_COLUMNS
        rows = ApiKey.objects.filter(pk=session.api_key_id).order_by().values_list(*columns)
        found = row_locks.shared(rows, of=("self",))
        key = found[0] if found else None
        if kept_key is not None:
            key_cache.confirm(kept_key, key)
        if key is None:
            return CREDENTIAL_GONE
        revoked_at, expires_at, organization_id, scopes = key[: len(API_KEY_COLUMNS)]
        if revoked_at is not None or (expires_at is not None and expires_at <= timezone.now()):
            return CREDENTIAL_GONE
        if organization_id != conversation.organization_id or not can_listen(scopes):
            return SCOPE_GONE
        return None

    pat: PersonalAccessToken | None = None
    if session.personal_access_token_id is not None:
        pats = PersonalAccessToken.objects.filter(pk=session.personal_access_token_id)
        pat = next(iter(row_locks.shared(pats.order_by())), None)
        if not usable(pat):
            return CREDENTIAL_GONE
    elif session.credential_label:
        # Minted with a credential that has since been deleted.
        return CREDENTIAL_GONE

    if session.user_id is None:
        # No holder was recorded (a caller that vouched for the listen itself), or the
        # user was deleted (their memberships' pre_delete revoked the sessions then).
        return None
    policy = policy_of(session.user_id)
    if policy is None:
        return OWNER_INACTIVE
    reason = policy.listen_refusal(without_visibility(conversation))
    if reason is not None:
        return reason
    if pat is not None:
        # A PAT never grants more than its owner's role does there.
        role_scopes = policy.memberships[conversation.organization_id].scopes
        if not can_listen(frozenset(pat.scopes) & role_scopes):
            return SCOPE_GONE
    return None
