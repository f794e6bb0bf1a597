"""The recorder's writer (``recorder_writer.py``): updates stored in arrival order, a
database error retried until it passes, a closed transcript dropped, and on shutdown
a bounded wait that names what it could not store."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from django.db import OperationalError

from anyreach_listen import transcripts
from anyreach_listen.errors import ApiError, Errors
from anyreach_listen.models import Conversation, ConversationStatus, TranscriptSegment
from anyreach_listen.recorder_writer import Writer
from anyreach_listen.transcripts import SegmentIn
from tests.support.world import build_world

pytestmark = pytest.mark.django_db(transaction=True)  # the writer stores from another thread

NO_WAIT = (0.0,)


@pytest.fixture
def call() -> Conversation:
    return build_world().conversations[ConversationStatus.IN_PROGRESS]


def _write(writer: Writer, updates: list[SegmentIn]) -> None:
    async def run() -> None:
        writer.start()
        for update in updates:
            writer.put(update)
        await writer.close()

    asyncio.run(run())


def _stored(call: Conversation) -> list[tuple[str, str, bool]]:
    rows = TranscriptSegment.objects.filter(conversation=call).order_by("position")
    return [(s.segment_id, s.text, s.final) for s in rows]


UPDATES = [
    SegmentIn("a1", "agent", "Thank", False),
    SegmentIn("a1", "agent", "Thank you.", True),
    SegmentIn("u1", "user", "Hi", True),
]


def test_database_errors_are_retried_and_nothing_is_lost(
    call: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = transcripts.record
    failures = iter([True, True])

    def flaky(conversation: Conversation, updates: Any, **kwargs: Any) -> Any:
        if next(failures, False):
            raise OperationalError("database is locked")
        return real(conversation, updates, **kwargs)

    monkeypatch.setattr(transcripts, "record", flaky)
    writer = Writer(call, retry_delays=NO_WAIT)
    _write(writer, UPDATES)
    assert _stored(call) == [("a1", "Thank you.", True), ("u1", "Hi", True)]
    assert writer.stored == 3


def test_a_closed_transcript_is_dropped_and_the_writer_goes_on(
    call: Conversation, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = transcripts.record
    calls: list[int] = []

    def closed_once(conversation: Conversation, updates: Any, **kwargs: Any) -> Any:
        calls.append(len(updates))
        if len(calls) == 1:
            raise ApiError(Errors.TRANSCRIPT_CLOSED)
        return real(conversation, updates, **kwargs)

    monkeypatch.setattr(transcripts, "record", closed_once)

    async def run() -> None:
        writer = Writer(call, retry_delays=NO_WAIT)
        writer.start()
        writer.put(UPDATES[0])
        await asyncio.sleep(0.5)  # the first batch is stored (and refused) alone
        writer.put(UPDATES[2])
        await writer.close()

    with caplog.at_level(logging.WARNING, "anyreach_listen.recorder_writer"):
        asyncio.run(run())
    assert "transcript_closed" in caplog.text
    assert _stored(call) == [("u1", "Hi", True)]


def test_on_shutdown_it_gives_up_after_the_flush_timeout_and_names_the_finals(
    call: Conversation, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def down(conversation: Conversation, updates: Any, **kwargs: Any) -> Any:
        raise OperationalError("the database is down")

    monkeypatch.setattr(transcripts, "record", down)
    writer = Writer(call, retry_delays=(0.05,), flush_timeout=0.3)
    with caplog.at_level(logging.ERROR, "anyreach_listen.recorder_writer"):
        _write(writer, UPDATES)
    assert "gave up storing 3 update(s)" in caplog.text
    assert "['a1', 'u1']" in caplog.text
    assert _stored(call) == []
