"""row_locks.py: share-locked reads. The locks themselves are proven on a real
PostgreSQL in tests/listening/test_minting.py; here the rewrite of Django's clause and
the rows read, on the embedded SQLite."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from anyreach_listen import row_locks
from anyreach_listen.models import Conversation
from tests.support.world import World


@pytest.mark.parametrize(
    ("compiled", "sent"),
    [
        ('SELECT "t"."id" FROM "t" WHERE "t"."id" = %s FOR NO KEY UPDATE',
         'SELECT "t"."id" FROM "t" WHERE "t"."id" = %s FOR SHARE'),
        ('SELECT "t"."id" FROM "t" INNER JOIN "o" ON 1 LIMIT 21 FOR NO KEY UPDATE OF "t"',
         'SELECT "t"."id" FROM "t" INNER JOIN "o" ON 1 LIMIT 21 FOR SHARE OF "t"'),
        ('SELECT 1 FROM "t" FOR NO KEY UPDATE OF "t", "o"',
         'SELECT 1 FROM "t" FOR SHARE OF "t", "o"'),
    ],
)  # fmt: skip
def test_django_s_exclusive_clause_is_sent_as_a_shared_one(compiled: str, sent: str) -> None:
    seen: list[str] = []

    def execute(sql: str, params: Any, many: bool, context: dict[str, Any]) -> str:
        seen.append(sql)
        return "result"

    assert row_locks._for_share(execute, compiled, [1], False, {}) == "result"
    assert seen == [sent]


@pytest.mark.parametrize(
    "compiled",
    [
        'SELECT "t"."id" FROM "t"',  # no lock asked for: never read unlocked
        'SELECT "t"."id" FROM "t" FOR UPDATE',  # the exclusive lock: never serialize readers
        'SELECT 1 FROM "t" FOR NO KEY UPDATE; SELECT 2',
    ],
)
def test_a_query_without_the_clause_is_refused_not_run(compiled: str) -> None:
    def execute(*args: Any) -> None:
        raise AssertionError("ran")

    with pytest.raises(RuntimeError, match="no FOR NO KEY UPDATE clause"):
        row_locks._for_share(execute, compiled, [], False, {})


def test_on_sqlite_the_rows_are_read_as_they_are_without_a_lock_clause(world: World) -> None:
    rows = Conversation.objects.filter(organization=world.org).order_by("pk")
    with transaction.atomic(), CaptureQueriesContext(connection) as captured:
        read = row_locks.shared(rows, of=("self",))
        values = row_locks.shared(rows.values_list("pk", "status"))
    assert read == list(rows) and read
    assert values == list(rows.values_list("pk", "status"))
    assert all("FOR " not in query["sql"] for query in captured.captured_queries)
