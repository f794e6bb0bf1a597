"""A listen session's state, written here only: opened (minted), joined, left, revoked.

Minting opens a session (``create``), the webhooks report its listener joining and
leaving, a room that closes makes its listeners leave (``close_room``), and revocation
revokes sessions (``revoke``; taking the listener out of the room is ``revocation``'s).
Each change is saved on a row its caller locked and published once it commits.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from anyreach_listen import disclosure
from anyreach_listen.events import publish_listener
from anyreach_listen.models import Conversation, ListenSession

USER_AGENT_MAX = 500  # the column's length


def create(
    conversation: Conversation,
    *,
    identity: str,
    via: str,
    expires_at: dt.datetime,
    audit: Mapping[str, Any],
    request: HttpRequest | None = None,
    session_id: uuid.UUID | None = None,
) -> ListenSession:
    """The session of a token just minted for ``identity``: the listen's audit row (who:
    ``audit``, a policy's ``audit_fields``; where from: ``request``)."""
    user_agent = (
        request.headers.get("User-Agent", "")[:USER_AGENT_MAX] if request is not None else ""
    )
    fields: dict[str, Any] = {"id": session_id} if session_id is not None else {}
    return ListenSession.objects.create(
        conversation=conversation,
        listener_identity=identity,
        via=via,
        expires_at=expires_at,
        user_agent=user_agent,
        **disclosure.who_columns(audit, client_ip=disclosure.request_ip(request)),
        **fields,
    )


def join(session: ListenSession, at: dt.datetime) -> bool:
    """The listener joined the room at ``at`` (first, or again after leaving with the
    same token); False for a copy or an older report of what is recorded."""
    if session.joined_at is None:
        session.joined_at = at
        session.save(update_fields=["joined_at"])
    elif session.left_at is not None and at > session.left_at:
        session.left_at = None  # rejoined with the same token
        session.save(update_fields=["left_at"])
    else:
        return False
    publish_listener(session, "joined")
    return True


def leave(session: ListenSession, at: dt.datetime) -> bool:
    """The listener left the room at ``at``; False when a later leave is recorded."""
    if session.left_at is not None and at <= session.left_at:
        return False
    session.left_at = at
    session.save(update_fields=["left_at"])
    publish_listener(session, "left")
    return True


def close_room(conversation: Conversation, at: dt.datetime) -> None:
    """The call's room closed at ``at``: the listeners still in it left with it."""
    in_room = ListenSession.objects.select_for_update().filter(
        conversation=conversation, joined_at__isnull=False, left_at__isnull=True
    )
    for session in in_room:
        session.left_at = max(at, session.joined_at) if session.joined_at else at
        session.save(update_fields=["left_at"])
        publish_listener(session, "left")


def revoke(sessions: QuerySet[ListenSession]) -> list[ListenSession]:
    """Mark ``sessions`` revoked now (their conversations loaded); the revoked sessions."""
    now = timezone.now()
    with transaction.atomic():
        # Lock only the session rows: the webhooks lock conversation, then sessions.
        revoked = list(sessions.select_for_update(of=("self",)).select_related("conversation"))
        for session in revoked:
            session.revoked_at = now
            session.save(update_fields=["revoked_at"])
            publish_listener(session, "revoked")
    return revoked
