"""A mint racing a revocation on PostgreSQL, run inside a server's database
(``manage.py shell``), so both sides use real connections and row locks.

    run_manage(env, "shell", "-c", "from tests.support.mint_race import main; main()")

It stages the worst interleaving, a revocation that found no sessions but has not
committed while a mint authorized before it writes one, and prints JSON of the outcome.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from anyreach_listen.access.credentials import issue_api_key
from anyreach_listen.access.roles import Scope
from anyreach_listen.api.errors import ApiError
from anyreach_listen.listening.minting import grant_listen
from anyreach_listen.listening.revocation import revoke_sessions
from anyreach_listen.models import ApiKey, Conversation, ConversationStatus, Organization

WAIT = 15.0  # seconds: deadline for each side to reach its step


def waiting_for_a_lock(own_pid: int) -> bool:
    """Whether another backend than ``own_pid`` waits for a lock now."""
    with connection.cursor() as cursor:
        # Statistics are snapshotted once per transaction: take a fresh look each time.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid <> %s AND wait_event_type = 'Lock'",
            [own_pid],
        )
        return bool(cursor.fetchone()[0])


def main() -> None:
    slug = f"race-{uuid.uuid4().hex[:8]}"
    org = Organization.objects.create(name=slug, slug=slug)
    conversation = Conversation.objects.create(
        organization=org, status=ConversationStatus.IN_PROGRESS, livekit_room=f"room-{slug}"
    )
    key, _ = issue_api_key(org, slug, [Scope.READ_SENSITIVE])
    authorized = ApiKey.objects.get(pk=key.pk)  # what the view checked: not revoked
    revocation_holds_lock, mint_done = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def revoke() -> None:
        try:
            with transaction.atomic():
                ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    own_pid = cursor.fetchone()[0]
                outcome["revoked_before_commit"] = len(
                    revoke_sessions(key.listen_sessions.revocable())
                )
                revocation_holds_lock.set()
                # Commit only once the mint has either finished or is blocked on us.
                deadline = time.monotonic() + WAIT
                while not (mint_done.is_set() or waiting_for_a_lock(own_pid)):
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.01)
                outcome["mint_waited"] = not mint_done.is_set()
        finally:
            connection.close()

    # Without a re-check on locked rows the mint would commit a session the revocation
    # never saw; with it, the mint waits for the key's row lock, sees the revocation and
    # refuses.
    def mint() -> None:
        try:
            revocation_holds_lock.wait(WAIT)
            try:
                grant_listen(conversation, via="api", audit={"api_key": authorized})
                outcome["mint"] = "granted"
            except ApiError as exc:
                outcome["mint"] = exc.kind.code
        finally:
            mint_done.set()
            connection.close()

    threads = [threading.Thread(target=revoke), threading.Thread(target=mint)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    outcome["unrevoked_sessions"] = key.listen_sessions.filter(revoked_at__isnull=True).count()
    print(json.dumps(outcome))
