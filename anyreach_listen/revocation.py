"""Taking listeners out of live calls when their access goes away.

A listener token cannot be recalled, and LiveKit keeps a connected participant
in the room after its token expires, so revoking access means removing the
participant through LiveKit's RoomService. This happens when:

- an API key or PAT is revoked (``revoke_credential``, or any save that sets
  ``revoked_at``: a ``post_save`` receiver in ``signals.py``);
- a membership is deleted (the user's listeners in that organization);
- an operator stops one listener (``stop_listener``, the admin action).

Each affected session (live: not left, not revoked, conversation active) gets
``revoked_at`` and a ``revoked`` event; the participants are removed after the
transaction commits ("not found" is fine: the listener had not joined yet or
already left; the webhook then removes a revoked session that joins later).
"""

from __future__ import annotations

import logging
import uuid

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from .events import publish_listener
from .livekit_service import remove_listeners, run_sync
from .models import (
    ACTIVE_STATUSES,
    ApiKey,
    Credential,
    ListenSession,
    Membership,
    PersonalAccessToken,
)

logger = logging.getLogger(__name__)


def revocable_sessions() -> QuerySet[ListenSession]:
    """Unrevoked sessions of calls still going on, including listeners that left:
    their token (or the one LiveKit refreshed) could still rejoin the room."""
    return ListenSession.objects.filter(
        revoked_at__isnull=True, conversation__status__in=ACTIVE_STATUSES
    )


def live_sessions() -> QuerySet[ListenSession]:
    """Listeners in a room right now (as far as the webhooks told us)."""
    return revocable_sessions().filter(left_at__isnull=True)


def sessions_of_credential(credential: Credential) -> QuerySet[ListenSession]:
    if isinstance(credential, ApiKey):
        return revocable_sessions().filter(api_key=credential)
    if isinstance(credential, PersonalAccessToken):
        return revocable_sessions().filter(personal_access_token=credential)
    raise TypeError(f"not a credential: {credential!r}")


def sessions_of_member(user_id: int, organization_id: uuid.UUID) -> QuerySet[ListenSession]:
    return revocable_sessions().filter(
        user_id=user_id, conversation__organization_id=organization_id
    )


def revoke_sessions(sessions: QuerySet[ListenSession]) -> list[ListenSession]:
    """Mark ``sessions`` revoked and remove their participants once committed."""
    now = timezone.now()
    with transaction.atomic():
        # Lock only the session rows: the webhooks lock conversation, then sessions.
        revoked = list(sessions.select_for_update(of=("self",)).select_related("conversation"))
        targets: list[tuple[str, str]] = []
        for session in revoked:
            session.revoked_at = now
            session.save(update_fields=["revoked_at"])
            publish_listener(session, "revoked")
            if session.conversation.livekit_room:
                targets.append((session.conversation.livekit_room, session.listener_identity))
        if targets:
            transaction.on_commit(lambda: _remove(targets))
    return revoked


def _remove(targets: list[tuple[str, str]]) -> None:
    try:
        results = run_sync(remove_listeners(targets))
    except Exception:  # the revocation itself is committed; never fail the caller
        logger.exception("Removing revoked listeners failed")
        return
    for identity, removed in results.items():
        logger.info(
            "Revoked listener %s: %s", identity, "removed" if removed else "not in the room"
        )


def revoke_credential(credential: Credential) -> list[ListenSession]:
    """Revoke an API key or PAT and take its live listeners out of their rooms."""
    with transaction.atomic():
        revoked = revoke_sessions(sessions_of_credential(credential))
        if credential.revoked_at is None:
            credential.revoked_at = timezone.now()
            # The post_save receiver then finds no live session left.
            credential.save(update_fields=["revoked_at"])
        return revoked


def stop_listener(session: ListenSession) -> bool:
    """Stop one listener now (the admin's "stop this listener"). False if not live."""
    return bool(revoke_sessions(live_sessions().filter(pk=session.pk)))


def revoke_membership(membership: Membership) -> list[ListenSession]:
    """The member's listeners in that organization, e.g. when the membership goes away."""
    return revoke_sessions(sessions_of_member(membership.user_id, membership.organization_id))
