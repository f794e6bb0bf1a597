"""The embedded SQLite backend (config/sqlite3/base.py): a closed connection's sqlite3
connection serves the next one, rolled back, and one process's transactions queue on a
lock of their own instead of SQLite's sleeping busy handler."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError, connections

from config.settings import SQLITE_OPTIONS
from config.sqlite3 import base
from config.sqlite3.base import DatabaseWrapper


@pytest.fixture
def database(tmp_path: Path, django_db_blocker: Any) -> Iterator[dict[str, Any]]:
    """The settings of a file database with the project's options, a table in it."""
    settings = {
        **connections.settings["default"],
        "ENGINE": "config.sqlite3",
        "NAME": str(tmp_path / "pool.sqlite3"),
        "OPTIONS": dict(SQLITE_OPTIONS),
    }
    with django_db_blocker.unblock():
        setup = DatabaseWrapper(settings, alias="pool-test")
        setup.cursor().execute("CREATE TABLE t (x INTEGER)")
        setup.close()
        yield settings
        base.close_idle()


def _begin(wrapper: DatabaseWrapper) -> None:
    """What ``transaction.atomic`` does first on SQLite."""
    wrapper.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)


def _end(wrapper: DatabaseWrapper, commit: bool = True) -> None:
    wrapper.commit() if commit else wrapper.rollback()
    wrapper.set_autocommit(True)


def test_a_closed_connection_serves_the_next_one_with_its_pragmas(
    database: dict[str, Any], django_db_blocker: Any
) -> None:
    with django_db_blocker.unblock():
        first = DatabaseWrapper(database, alias="pool-test")
        first.ensure_connection()
        raw = first.connection
        first.close()
        second = DatabaseWrapper(database, alias="pool-test")
        second.ensure_connection()
        assert second.connection is raw
        with second.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            assert cursor.fetchone()[0] == "wal"
        second.close()


def test_an_unfinished_transaction_is_rolled_back_before_the_connection_is_reused(
    database: dict[str, Any], django_db_blocker: Any
) -> None:
    with django_db_blocker.unblock():
        writer = DatabaseWrapper(database, alias="pool-test")
        _begin(writer)
        writer.cursor().execute("INSERT INTO t VALUES (1)")
        writer.close()  # mid-transaction, as a request that died would
        reader = DatabaseWrapper(database, alias="pool-test")
        with reader.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM t")
            assert cursor.fetchone()[0] == 0
        _begin(reader)  # the process's writer lock was released with it
        _end(reader)
        reader.close()


def test_in_memory_databases_are_not_pooled(django_db_blocker: Any) -> None:
    settings = {**connections.settings["default"], "ENGINE": "config.sqlite3"}
    settings.update(NAME="file:pool-mem?mode=memory&cache=shared", OPTIONS={})
    with django_db_blocker.unblock():
        wrapper = DatabaseWrapper(settings, alias="pool-mem")
        assert wrapper._shared is None
        wrapper.ensure_connection()
        wrapper.close()  # Django never closes an in-memory database
        assert wrapper.connection is not None


def _in_thread(fn: Any) -> Any:
    """``fn()`` in a thread of its own (a Django connection stays in its thread)."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # handed back to the test's thread
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return result[0]


def test_a_second_writer_of_the_process_waits_for_the_first(
    database: dict[str, Any], django_db_blocker: Any
) -> None:
    with django_db_blocker.unblock():
        first = DatabaseWrapper(database, alias="pool-test")
        _begin(first)
        first.cursor().execute("INSERT INTO t VALUES (1)")
        started = threading.Event()
        order: list[str] = []

        def second_writer() -> int:
            second = DatabaseWrapper(database, alias="pool-test")
            started.set()
            _begin(second)  # waits for the first's commit
            order.append("second began")
            with second.cursor() as cursor:
                cursor.execute("INSERT INTO t VALUES (2)")
                cursor.execute("SELECT COUNT(*) FROM t")
                count = int(cursor.fetchone()[0])
            _end(second)
            second.close()
            return count

        thread_result: list[int] = []
        thread = threading.Thread(target=lambda: thread_result.append(second_writer()))
        thread.start()
        started.wait()
        order.append("first commits")
        _end(first)
        thread.join()
        first.close()
        assert order == ["first commits", "second began"]
        assert thread_result == [2]  # it saw the first's row: it began after its commit


def test_a_writer_that_waits_past_the_timeout_is_told_the_database_is_locked(
    database: dict[str, Any], django_db_blocker: Any
) -> None:
    impatient = {**database, "OPTIONS": {**database["OPTIONS"], "timeout": 0.01}}
    with django_db_blocker.unblock():
        first = DatabaseWrapper(database, alias="pool-test")
        _begin(first)

        def second_writer() -> None:
            second = DatabaseWrapper(impatient, alias="pool-test")
            _begin(second)

        error = _in_thread(second_writer)
        _end(first)
        first.close()
    assert isinstance(error, OperationalError)
    assert "database is locked" in str(error)


def test_a_transaction_holds_the_processs_writer_lock_until_it_ends(
    database: dict[str, Any], django_db_blocker: Any
) -> None:
    writer_lock = base._file(database["NAME"]).writer

    def free() -> bool:
        """Whether another thread could take the lock now."""

        def attempt() -> bool:
            taken = writer_lock.acquire(blocking=False)
            if taken:
                writer_lock.release()
            return taken

        return bool(_in_thread(attempt))

    with django_db_blocker.unblock():
        wrapper = DatabaseWrapper(database, alias="pool-test")
        wrapper.ensure_connection()
        assert free()
        _begin(wrapper)
        assert not free()
        _end(wrapper, commit=False)
        assert free()
        _begin(wrapper)
        _end(wrapper)
        assert free()
        wrapper.close()


def test_a_forked_child_forgets_its_parents_connections_without_closing_them(
    database: dict[str, Any], django_db_blocker: Any
) -> None:
    """What ``os.register_at_fork`` runs in a child (called here, without forking a
    multi-threaded test process): the pool is emptied, the connections left alone."""
    with django_db_blocker.unblock():
        wrapper = DatabaseWrapper(database, alias="pool-test")
        wrapper.ensure_connection()
        raw = wrapper.connection
        wrapper.close()
    assert base._file(database["NAME"]).idle == [raw]
    base._forget_idle_in_child()
    assert base._file(database["NAME"]).idle == []
    assert raw.execute("SELECT 1").fetchone() == (1,)  # not closed: the parent's still
    raw.close()
