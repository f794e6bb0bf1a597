"""Taking listeners out of live calls when their access goes away.

A listener token cannot be recalled, and LiveKit refreshes a connected participant's
token, so revoking access means removing the participant through LiveKit's RoomService.
The receivers in ``signals.py``, the admin's stop action and the periodic sweep
(``manage.py sweep_listeners``) revoke through this module. When and how:
docs/internals/calls.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from anyreach_listen.assist import takeover
from anyreach_listen.listening import entitlement
from anyreach_listen.listening import sessions as session_state
from anyreach_listen.livekit.service import list_listeners, remove_listeners, run_sync
from anyreach_listen.models import (
    ApiKey,
    Conversation,
    ListenSession,
    Membership,
    PersonalAccessToken,
    TakeoverEnd,
)

logger = logging.getLogger(__name__)

# Seconds between attempts to remove listeners when LiveKit fails; after the
# last one the sweep is the safety net.
RETRY_DELAYS: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 8.0)

Target = tuple[str, str]  # (room, listener identity)


def revoke_sessions(sessions: QuerySet[ListenSession]) -> list[ListenSession]:
    """Mark ``sessions`` revoked and remove their participants once committed."""
    with transaction.atomic():
        revoked = session_state.revoke(sessions)
        targets: list[Target] = [
            (session.conversation.livekit_room, session.listener_identity)
            for session in revoked
            if session.conversation.livekit_room
        ]
        if targets:
            transaction.on_commit(lambda: remove_with_retries(targets))
    return revoked


def revoke_unentitled(sessions: QuerySet[ListenSession]) -> list[ListenSession]:
    """Revoke those of ``sessions`` (revocable ones) whose holder may no longer listen."""
    with transaction.atomic():
        revocable = sessions & ListenSession.objects.revocable()
        candidates = revocable.select_related("conversation__organization")
        lost = [s.pk for s in candidates if entitlement.refusal(s) is not None]
        return revoke_sessions(ListenSession.objects.filter(pk__in=lost)) if lost else []


def _attempt(targets: list[Target]) -> list[Target]:
    """One round of removals; returns the targets that failed."""
    try:
        results = run_sync(remove_listeners(targets))
    except Exception:
        logger.exception("Removing revoked listeners failed")
        return targets
    for identity, removed in results.items():
        if removed is not None:
            logger.info(
                "Took %s out of its room: %s", identity, "removed" if removed else "not there"
            )
    return [t for t in targets if results.get(t[1]) is None]


def _retry(targets: list[Target], delays: Sequence[float]) -> None:
    for delay in delays:
        time.sleep(delay)
        targets = _attempt(targets)
        if not targets:
            return
    logger.error(
        "Could not remove %d participant(s) after %d attempts; the sweep will retry: %s",
        len(targets),
        len(delays) + 1,
        ", ".join(identity for _, identity in targets),
    )


def remove_with_retries(targets: list[Target]) -> None:
    """Remove now; what fails is retried with backoff in the background, so the
    request that revoked (already committed) is not held up by a LiveKit outage."""
    failed = _attempt(targets)
    if failed:
        threading.Thread(
            target=_retry, args=(failed, RETRY_DELAYS), name="listener-removal", daemon=True
        ).start()


def revoke_credential(credential: ApiKey | PersonalAccessToken) -> list[ListenSession]:
    """Revoke an API key or PAT, take its live listeners out of their rooms and hand
    back the calls it had taken over."""
    with transaction.atomic():
        if credential.revoked_at is None:
            # First the credential row (a mint in flight locks it), then its sessions;
            # update(), not save(): the post_save receiver would revoke them itself.
            credential.revoked_at = timezone.now()
            type(credential).objects.filter(pk=credential.pk).update(
                revoked_at=credential.revoked_at
            )
        takeover.end_takeovers(credential.takeovers.all(), TakeoverEnd.ACCESS_LOST)
        return revoke_sessions(credential.listen_sessions.revocable())


def stop_listener(session: ListenSession) -> bool:
    """Stop one listener now (the admin's "stop this listener"), also one that left
    and could rejoin with its token. False if already revoked or the call is over."""
    return bool(revoke_sessions(ListenSession.objects.revocable().filter(pk=session.pk)))


def revoke_membership(membership: Membership) -> list[ListenSession]:
    """The member's listeners in that organization, e.g. when the membership goes away."""
    return revoke_sessions(
        ListenSession.objects.revocable().filter(
            user_id=membership.user_id, conversation__organization_id=membership.organization_id
        )
    )


def revoke_lost_access(user_id: int) -> list[ListenSession]:
    """After a change to the user (role, teams, active flag): revoke the listens
    their access no longer covers."""
    return revoke_unentitled(ListenSession.objects.filter(user_id=user_id))


def revoke_lost_conversation_access(conversation: Conversation) -> list[ListenSession]:
    """After a call moved to another team: its listeners outside that team go."""
    return revoke_unentitled(conversation.listen_sessions.all())


@dataclass(frozen=True)
class SweepResult:
    revoked: int  # sessions whose right was gone (a change the signals did not see)
    removed: int  # revoked listeners, or another call's, found in a room and taken out


def sweep() -> SweepResult:
    """The safety net: revoke what lost its right, and remove from live rooms the
    listeners that may not be there: revoked ones, and those minted for another call
    (one that lost the room to its owner, or an earlier call under a reused name)."""
    revoked = revoke_unentitled(ListenSession.objects.all())
    live = Conversation.objects.active().exclude(livekit_room=None)
    calls = {room: pk for room, pk in live.values_list("livekit_room", "pk") if room}
    present = run_sync(list_listeners(list(calls))) if calls else {}
    sessions = {
        identity: (conversation_id, revoked_at)
        for identity, conversation_id, revoked_at in ListenSession.objects.filter(
            listener_identity__in=[i for identities in present.values() for i in identities]
        ).values_list("listener_identity", "conversation_id", "revoked_at")
    }
    stale: list[Target] = [
        (room, identity)
        for room, identities in present.items()
        for identity in identities
        if identity in sessions
        and (sessions[identity][1] is not None or sessions[identity][0] != calls[room])
    ]
    failed = _attempt(stale) if stale else []
    return SweepResult(revoked=len(revoked), removed=len(stale) - len(failed))
