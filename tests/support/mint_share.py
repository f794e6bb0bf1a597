"""Two mints of one API key for one call in flight at once on PostgreSQL, then a
revocation of that key, run inside a server's database (``manage.py shell``), so every
side has a real connection and real row locks.

    run_manage(env, "shell", "-c", "from tests.support.mint_share import main; main()")

The first mint holds its transaction open until the second has committed: with the
shared locks of ``row_locks`` the second goes through, with ``FOR UPDATE`` it would
wait for the first and time out. Then, with the first still open, a revocation of the
key must wait for it and still revoke both sessions. Prints JSON of the outcome.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from django.db import connection, transaction

from anyreach_listen.access.credentials import issue_api_key
from anyreach_listen.access.roles import Scope
from anyreach_listen.api.errors import ApiError
from anyreach_listen.listening.minting import grant_listen
from anyreach_listen.listening.revocation import revoke_credential
from anyreach_listen.models import ApiKey, Conversation, ConversationStatus, Organization
from tests.support.mint_race import WAIT, waiting_for_a_lock


def main() -> None:
    slug = f"share-{uuid.uuid4().hex[:8]}"
    org = Organization.objects.create(name=slug, slug=slug)
    conversation = Conversation.objects.create(
        organization=org, status=ConversationStatus.IN_PROGRESS, livekit_room=f"room-{slug}"
    )
    key, _ = issue_api_key(org, slug, [Scope.READ_SENSITIVE])
    first_holds_locks, second_done, revocation_done = (threading.Event() for _ in range(3))
    outcome: dict[str, Any] = {}

    def mint(name: str) -> None:
        with connection.cursor() as cursor:
            # A mint that waits for the other's locks fails here instead of hanging.
            cursor.execute(f"SET lock_timeout = '{int(WAIT * 1000)}ms'")
        try:
            grant_listen(conversation, via="api", audit={"api_key": ApiKey.objects.get(pk=key.pk)})
            outcome[name] = "granted"
        except ApiError as exc:
            outcome[name] = exc.kind.code
        except Exception as exc:  # the lock timeout: reported, not raised in a thread
            outcome[name] = type(exc).__name__

    def first() -> None:
        try:
            with transaction.atomic():
                mint("first")
                first_holds_locks.set()
                outcome["second_done_while_first_open"] = second_done.wait(WAIT * 2)
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    own_pid = cursor.fetchone()[0]
                # Commit only once the revocation is blocked on this transaction's locks.
                deadline = time.monotonic() + WAIT
                while not waiting_for_a_lock(own_pid) and time.monotonic() < deadline:
                    time.sleep(0.01)
                outcome["revocation_waited"] = not revocation_done.is_set()
        finally:
            connection.close()

    def second() -> None:
        try:
            first_holds_locks.wait(WAIT)
            mint("second")
        finally:
            second_done.set()
            connection.close()

    def revoke() -> None:
        try:
            second_done.wait(WAIT * 2)
            revoke_credential(ApiKey.objects.get(pk=key.pk))
        finally:
            revocation_done.set()
            connection.close()

    threads = [threading.Thread(target=f) for f in (first, second, revoke)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 4)
    outcome["sessions"] = key.listen_sessions.count()
    outcome["unrevoked_sessions"] = key.listen_sessions.filter(revoked_at__isnull=True).count()
    print(json.dumps(outcome))
