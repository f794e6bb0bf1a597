"""Django's SQLite backend for a server process: connections kept for the next request,
and the process's writers queued on a lock of their own.

Under ASGI Django opens a database connection per request and closes it at the
request's end (``request_finished``; with Django's own handler each request also runs in
a thread of its own, whatever ``CONN_MAX_AGE`` says: Django ticket #33497).
A new SQLite connection runs the init command's pragmas and parses the whole schema again
on its first query: about a millisecond a request here, as much as a listener token's
own queries. So a closed connection's sqlite3 connection goes back to a small pool per
database file, rolled back, and the next connection takes it: the same file, pragmas and
registered functions (PostgreSQL's psycopg pool does this for the scale-out setup).

``transaction_mode: IMMEDIATE`` takes SQLite's write lock when a transaction begins; a
writer that finds it taken sleeps in SQLite's busy handler (1, 2, 5, 10 … 100 ms steps),
so under load writers wait far longer than the lock is held. The transactions of one
process queue on a lock here instead, each starting the moment the last one ends;
SQLite's own lock still orders them against other processes (a management command, a
second server). The wait is bounded by the ``timeout`` option, as SQLite's is.

In-memory databases (tests) are left to Django: it never closes them, and one connection
is the whole database.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Any

from django.db import OperationalError
from django.db.backends.sqlite3 import base

# Idle connections kept per database file; more concurrent requests than this open
# their own and close them as Django does.
MAX_IDLE = 32
DEFAULT_TIMEOUT = 5.0  # Python's sqlite3 default, when OPTIONS give none


@dataclass
class _File:
    """What the connections of one database file share in this process."""

    idle: list[sqlite3.Connection] = field(default_factory=list)
    # Reentrant: a thread that opens a second connection's transaction inside its first
    # gets SQLite's own answer (busy, then "database is locked"), not a deadlock here.
    writer: threading.RLock = field(default_factory=threading.RLock)


_lock = threading.Lock()
_files: dict[str, _File] = {}


def _file(name: str) -> _File:
    with _lock:
        return _files.setdefault(name, _File())


# django-stubs leaves out the private hooks overridden here (type: ignore[misc]).
class DatabaseWrapper(base.DatabaseWrapper):
    transaction_mode: str | None  # set by Django's get_connection_params
    _holds_writer = False

    @property
    def _shared(self) -> _File | None:
        """This database file's pool and writer lock; None for an in-memory database."""
        return None if self.is_in_memory_db() else _file(str(self.settings_dict["NAME"]))

    def get_new_connection(self, conn_params: dict[str, Any]) -> sqlite3.Connection:
        shared = self._shared
        if shared is not None:
            with _lock:
                if shared.idle:
                    return shared.idle.pop()
        connection: sqlite3.Connection = super().get_new_connection(conn_params)
        return connection

    def _close(self) -> None:
        shared, connection = self._shared, self.connection
        if shared is None or connection is None:
            super()._close()  # type: ignore[misc]
            return
        try:
            with self.wrap_database_errors:
                if connection.in_transaction:
                    connection.rollback()  # what closing does to an unfinished transaction
        finally:
            self._release_writer()
        with _lock:
            if len(shared.idle) < MAX_IDLE:
                shared.idle.append(connection)
                return
        with self.wrap_database_errors:
            connection.close()

    # --- writers queue on the process's lock --------------------------------------------

    def _start_transaction_under_autocommit(self) -> None:
        shared = self._shared
        if shared is not None and self.transaction_mode in ("IMMEDIATE", "EXCLUSIVE"):
            timeout = float(self.settings_dict["OPTIONS"].get("timeout", DEFAULT_TIMEOUT))
            if not shared.writer.acquire(timeout=timeout):
                raise OperationalError("database is locked")
            self._holds_writer = True
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]
        except BaseException:
            self._release_writer()
            raise

    def _commit(self) -> None:
        try:
            super()._commit()  # type: ignore[misc]
        finally:
            self._release_writer()

    def _rollback(self) -> None:
        try:
            super()._rollback()  # type: ignore[misc]
        finally:
            self._release_writer()

    def _release_writer(self) -> None:
        if self._holds_writer:
            self._holds_writer = False
            shared = self._shared
            if shared is not None:
                shared.writer.release()


def _forget_idle_in_child() -> None:
    # A forked child must not use (nor close) its parent's SQLite connections.
    for shared in _files.values():
        shared.idle.clear()


os.register_at_fork(after_in_child=_forget_idle_in_child)


def close_idle() -> None:
    """Close every idle pooled connection (tests)."""
    with _lock:
        idle = [c for shared in _files.values() for c in shared.idle]
        for shared in _files.values():
            shared.idle.clear()
    for connection in idle:
        connection.close()
