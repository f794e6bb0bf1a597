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

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from .events import publish_listener
from .livekit_service import remove_listeners, run_sync
from .models import ApiKey, ListenSession, Membership, PersonalAccessToken

logger = logging.getLogger(__name__)


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


def revoke_credential(credential: ApiKey | PersonalAccessToken) -> list[ListenSession]:
    """Revoke an API key or PAT and take its live listeners out of their rooms."""
    with transaction.atomic():
        revoked = revoke_sessions(credential.listen_sessions.revocable())
        if credential.revoked_at is None:
            credential.revoked_at = timezone.now()
            # The post_save receiver then finds no live session left.
            credential.save(update_fields=["revoked_at"])
        return revoked


def stop_listener(session: ListenSession) -> bool:
    """Stop one listener now (the admin's "stop this listener"). False if not live."""
    return bool(revoke_sessions(ListenSession.objects.live().filter(pk=session.pk)))


def revoke_membership(membership: Membership) -> list[ListenSession]:
    """The member's listeners in that organization, e.g. when the membership goes away."""
    return revoke_sessions(
        ListenSession.objects.revocable().filter(
            user_id=membership.user_id, conversation__organization_id=membership.organization_id
        )
    )
