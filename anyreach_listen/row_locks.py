"""Shared row locks: for a reader that must not miss a concurrent change to the rows it
read, while other such readers go on.

A mint reads its call's row and its credential's under a lock, so that a change (the
call ends, the key is revoked) either waits for the mint's audit row or is seen by it
(listening/entitlement.py). Django locks only ``FOR UPDATE``, which also makes every
other mint of the same key or call wait for this one's commit: on PostgreSQL one API
key's mints would run one at a time. ``FOR SHARE`` blocks the changes (an ``UPDATE`` or
``DELETE`` of the row) and lets readers share. Django has no such clause, so ``shared``
asks for ``select_for_update(no_key=True)`` and rewrites that clause of the query Django
compiled; SQLite has no row locks (its write transaction is the lock) and gets none.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.db import connections
from django.db.models import QuerySet

# Django's clause for select_for_update(no_key=True), with or without "OF <tables>".
_EXCLUSIVE = re.compile(r" FOR NO KEY UPDATE(?P<of> OF [^;]+)?$")


def shared[Row](rows: QuerySet[Any, Row], *, of: tuple[str, ...] = ()) -> list[Row]:
    """``rows`` read now, locked ``FOR SHARE`` (of the tables ``of`` names, as in
    ``select_for_update``) until the caller's transaction ends."""
    locked = rows.select_for_update(of=of, no_key=True)
    connection = connections[locked.db]
    if not connection.features.has_select_for_update:
        return list(locked)
    with connection.execute_wrapper(_for_share):
        return list(locked)


def _for_share(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    sql, found = _EXCLUSIVE.subn(lambda m: " FOR SHARE" + (m["of"] or ""), sql)
    if found != 1:
        # Never run the read unlocked, nor with the lock that would serialize readers.
        raise RuntimeError(f"shared(): no FOR NO KEY UPDATE clause to rewrite in {sql!r}")
    return execute(sql, params, many, context)
