"""Sending transcript recorders to live calls' rooms, on LiveKit's agent dispatch.

Every active conversation with an open LiveKit room gets ``RECORDER["PER_ROOM"]``
recorders. Dispatching is asked for whenever a room may lack them, after the change
commits and on a thread of its own, so a LiveKit outage never holds up or fails a
request; ``livekit/service.py``'s ``ensure_agents`` creates only what is missing. The triggers:
docs/operations/recorder.md ("When it is sent").
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import connections, transaction
from django.utils import timezone
from livekit import api

from anyreach_listen.conf import listen_settings
from anyreach_listen.livekit.room_ownership import owner_named
from anyreach_listen.livekit.service import (
    Dispatched,
    ensure_agents,
    is_dispatched_agent,
    livekit_api,
    run_sync,
)
from anyreach_listen.models import Conversation

logger = logging.getLogger(__name__)

# One background thread per process does the dispatching, in order: two triggers for
# one room at once would both see a recorder missing and create two, and a LiveKit
# outage queues work instead of threads. A room already queued is not queued again.
_executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="recorder-dispatch")
_queued: set[Target] = set()
_queued_lock = threading.Lock()


@dataclass(frozen=True)
class Target:
    room: str
    conversation_id: str
    gone: frozenset[str] = frozenset()  # recorder identities seen leaving the room
    # The conversation's organization: the room's metadata must not name another one.
    organization_id: str = field(default="", compare=False)

    def owns(self, room: api.Room) -> bool:
        owner = owner_named(room.metadata)
        return owner is None or not self.organization_id or str(owner) == self.organization_id

    @property
    def metadata(self) -> str:
        # The recorder stores into this conversation (a room name can be reused later).
        return json.dumps({"conversation_id": self.conversation_id})


def enabled() -> bool:
    return listen_settings.RECORDER is not None


async def _ensure(targets: Iterable[Target]) -> dict[str, Dispatched | None]:
    """Ensure each room's recorders; room -> what was done, None when LiveKit failed (logged)."""
    conf = listen_settings.RECORDER
    results: dict[str, Dispatched | None] = {}
    targets = list(targets)
    if conf is None or not targets:
        return results
    async with livekit_api() as client:
        for target in targets:
            try:
                result = await ensure_agents(
                    target.room,
                    conf["AGENT_NAME"],
                    conf["PER_ROOM"],
                    target.metadata,
                    client,
                    gone=target.gone,
                    accepts=target.owns,
                )
            except Exception:
                logger.exception("Could not dispatch a recorder to room %s", target.room)
                results[target.room] = None
                continue
            results[target.room] = result
            if result.created or result.deleted:
                logger.info(
                    "Room %s: %d recorder(s) present, %d dispatched, %d stale dispatch(es) deleted",
                    target.room,
                    result.present,
                    result.created,
                    result.deleted,
                )
    return results


def ensure_now(targets: Iterable[Target]) -> dict[str, Dispatched | None]:
    """Ensure the rooms' recorders, waiting for LiveKit (the sweep, tests). A room whose
    metadata names another organization than its call's gets none, and the call loses
    it: the webhook that should have taken it (room_started) was missed."""
    targets = list(targets)
    results = run_sync(_ensure(targets))
    for target in targets:
        result = results.get(target.room)
        if result is not None and result.refused:
            _lose_room(target)
    return results


def _lose_room(target: Target) -> None:
    # Imported here: the conversations service dispatches through this module.
    from anyreach_listen import conversations

    logger.warning("Room %s belongs to another organization: its call loses it", target.room)
    call = Conversation.objects.filter(pk=target.conversation_id).first()
    if call is not None:
        conversations.lose_room(call, at=timezone.now())


def _run_queued(target: Target) -> None:
    with _queued_lock:
        _queued.discard(target)
    ensure_now([target])


def in_background(target: Target) -> concurrent.futures.Future[None] | None:
    """Queue ``target`` for the background thread (None: the same is queued already)."""
    with _queued_lock:
        if target in _queued:
            return None
        _queued.add(target)
    return _executor.submit(_run_queued, target)


def dispatch_on_commit(conversation: Conversation, *, gone: str = "") -> None:
    """Once the current transaction commits, ensure the recorders of the conversation's
    room, in the background; ``gone``: the identity of a recorder that just left. Nothing
    for a call without a room, an ended call, or with ``RECORDER`` None."""
    if not enabled() or not conversation.livekit_room or not conversation.is_active:
        return
    left = frozenset({gone}) if gone else frozenset()
    target = Target(
        conversation.livekit_room, str(conversation.pk), left, str(conversation.organization_id)
    )
    transaction.on_commit(lambda: in_background(target), robust=True)


def is_recorder(participant: api.ParticipantInfo) -> bool:
    """One of our recorders (by LiveKit's marks, never by what a participant says)."""
    conf = listen_settings.RECORDER
    return conf is not None and is_dispatched_agent(participant, conf["AGENT_NAME"])


def active_targets() -> list[Target]:
    rows = Conversation.objects.active().exclude(livekit_room=None).exclude(livekit_room="")
    fields = rows.values_list("pk", "livekit_room", "organization_id")
    return [Target(room, str(pk), organization_id=str(org)) for pk, room, org in fields if room]


def sweep_in_background() -> concurrent.futures.Future[None]:
    """``sweep`` on the dispatch thread (a recorder worker registered: the portal's
    intake must not wait for LiveKit)."""
    return _executor.submit(_sweep_and_close)


def _sweep_and_close() -> None:
    try:
        dispatched = sweep()
    except Exception:
        logger.exception("Could not dispatch recorders to the live calls")
    else:
        if dispatched:
            logger.info("Recorders dispatched to %d live call(s) lacking them", dispatched)
    finally:
        connections.close_all()  # this thread's database connections


def sweep() -> int:
    """Ensure the recorders of every active call (``sweep_listeners``); rooms dispatched to."""
    if not enabled():
        return 0
    targets = active_targets()
    if not targets:
        return 0
    results = ensure_now(targets)
    return sum(1 for r in results.values() if r is not None and r.created)
