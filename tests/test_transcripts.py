"""transcripts.py: recording segments as the frame merges them, reading, retention (+ the
``purge_transcripts`` command)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import pytest
from django.core.cache import cache, caches
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from anyreach_listen import alerts, disclosure, events, transcripts
from anyreach_listen.api.errors import ApiError
from anyreach_listen.models import (
    Conversation,
    ConversationStatus,
    TranscriptRead,
    TranscriptSegment,
    TranscriptVia,
)
from anyreach_listen.transcripts import SegmentIn, record, segments
from tests.support.commands import run
from tests.support.world import World, make_conversation


def agent(segment_id: str, text: str, final: bool = False) -> SegmentIn:
    return SegmentIn(segment_id, "agent", text, final)


def user(segment_id: str, text: str, final: bool = False) -> SegmentIn:
    return SegmentIn(segment_id, "user", text, final)


def shown(conversation: Conversation) -> list[tuple[str, str, str, bool]]:
    return [(s.role, s.id, s.text, s.final) for s in segments(conversation)]


@pytest.fixture
def call(world: World) -> Conversation:
    return world.conversations["in_progress"]


def test_a_final_segment_pushed_twice_is_stored_once(call: Conversation) -> None:
    first = record(call, [agent("a1", "Hello, how can I help?", final=True)])
    again = record(call, [agent("a1", "Hello, how can I help?", final=True)])
    assert (first.recorded, first.unchanged) == (1, 0)
    assert (again.recorded, again.unchanged) == (0, 1)
    assert shown(call) == [("agent", "a1", "Hello, how can I help?", True)]
    assert TranscriptSegment.objects.filter(conversation=call).count() == 1


def test_interim_updates_live_in_the_cache_and_the_final_text_in_the_row(
    call: Conversation,
) -> None:
    record(call, [agent("a1", "Hello")])
    row = TranscriptSegment.objects.get(conversation=call, segment_id="a1")
    first_seen = row.first_seen_at
    record(call, [agent("a1", "Hello, how")])
    record(call, [agent("a1", "Hello, how can")])
    # The row still holds what was first seen; live views get the latest interim.
    row.refresh_from_db()
    assert (row.text, row.final) == ("Hello", False)
    assert transcripts.latest_interim(call.pk, "agent") == {"id": "a1", "text": "Hello, how can"}
    assert shown(call) == [("agent", "a1", "Hello, how can", False)]

    record(call, [agent("a1", "Hello, how can I help?", final=True)])
    row.refresh_from_db()
    assert (row.text, row.final, row.first_seen_at) == ("Hello, how can I help?", True, first_seen)
    assert row.final_at is not None
    assert transcripts.latest_interim(call.pk, "agent") is None
    assert shown(call) == [("agent", "a1", "Hello, how can I help?", True)]


def test_an_interim_update_writes_nothing_to_the_database(call: Conversation) -> None:
    record(call, [agent("a1", "Hello")])
    with CaptureQueriesContext(connection) as queries:
        record(call, [agent("a1", "Hello there")])
    writes = [q["sql"] for q in queries if q["sql"].startswith(("INSERT", "UPDATE", "DELETE"))]
    assert writes == []
    # Nor takes the write lock: no transaction (a savepoint inside the test's own).
    assert not [q["sql"] for q in queries if "SAVEPOINT" in q["sql"]]
    assert shown(call) == [("agent", "a1", "Hello there", False)]


def test_a_final_is_never_overwritten_by_a_late_interim_or_another_final(
    call: Conversation,
) -> None:
    record(call, [agent("a1", "Sure thing.", final=True)])
    late = record(call, [agent("a1", "Sure thing. And more"), agent("a1", "Other", final=True)])
    assert (late.recorded, late.unchanged) == (0, 2)
    assert shown(call) == [("agent", "a1", "Sure thing.", True)]
    assert transcripts.latest_interim(call.pk, "agent") is None


def test_an_interim_that_repeats_or_goes_backwards_is_dropped(call: Conversation) -> None:
    record(call, [user("u1", "I was charged")])
    result = record(call, [user("u1", "I was charged"), user("u1", "I was")])
    assert (result.recorded, result.unchanged) == (0, 2)
    assert shown(call) == [("user", "u1", "I was charged", False)]
    # A correction that is not a prefix is taken.
    record(call, [user("u1", "I was charred")])
    assert shown(call) == [("user", "u1", "I was charred", False)]


def test_an_empty_interim_of_a_new_segment_is_not_stored(call: Conversation) -> None:
    result = record(call, [user("u1", "")])
    assert (result.recorded, result.unchanged) == (0, 1)
    assert shown(call) == []


def test_segments_are_told_apart_by_role_as_the_frame_does(call: Conversation) -> None:
    record(call, [agent("s1", "Agent speaking")])
    # The caller reusing the agent's id neither settles nor hides the agent's segment.
    record(call, [user("s1", "Caller speaking", final=True)])
    assert shown(call) == [
        ("agent", "s1", "Agent speaking", False),
        ("user", "s1", "Caller speaking", True),
    ]


def test_spoken_order_is_the_order_segments_were_first_seen(call: Conversation) -> None:
    record(call, [agent("a1", "Hello")])
    record(call, [user("u1", "Hi there.", final=True)])
    record(call, [agent("a1", "Hello, welcome back.", final=True), agent("a2", "Anything else?")])
    assert [(role, sid) for role, sid, _, _ in shown(call)] == [
        ("agent", "a1"),
        ("user", "u1"),
        ("agent", "a2"),
    ]
    positions = list(call.transcript_segments.order_by("position").values_list("position"))
    assert positions == [(1,), (2,), (3,)]


def test_each_speaker_keeps_only_its_latest_interim(call: Conversation) -> None:
    record(call, [agent("a1", "One"), user("u1", "Two"), agent("a2", "Three")])
    assert transcripts.latest_interim(call.pk, "agent") == {"id": "a2", "text": "Three"}
    assert transcripts.latest_interim(call.pk, "user") == {"id": "u1", "text": "Two"}
    # a1 is no longer the agent's latest interim: its stored first text is shown.
    assert shown(call)[0] == ("agent", "a1", "One", False)


def test_a_lost_cache_falls_back_to_the_stored_text(call: Conversation) -> None:
    record(call, [agent("a1", "Hello"), agent("a1", "Hello again")])
    cache.clear()
    assert shown(call) == [("agent", "a1", "Hello", False)]


@pytest.mark.parametrize(
    ("ended_seconds_ago", "late_seconds", "accepted"),
    [(10, 300, True), (299, 300, True), (301, 300, False), (1, 0, False)],
)
def test_segments_are_refused_once_the_call_ended_more_than_the_late_window_ago(
    settings: object,
    world: World,
    ended_seconds_ago: int,
    late_seconds: int,
    accepted: bool,
) -> None:
    from tests.support.world import TEST_LISTEN_SETTINGS

    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, "TRANSCRIPT_LATE_SECONDS": late_seconds}  # type: ignore[attr-defined]
    call = world.conversations["completed"]
    now = timezone.now()
    Conversation.objects.filter(pk=call.pk).update(
        ended_at=now - dt.timedelta(seconds=ended_seconds_ago)
    )
    if accepted:
        assert record(call, [user("u9", "Bye.", final=True)], at=now).recorded == 1
    else:
        with pytest.raises(ApiError) as caught:
            record(call, [user("u9", "Bye.", final=True)], at=now)
        assert caught.value.code == "transcript_closed"
        assert not call.transcript_segments.exists()


class _Layer:
    """A channel layer that keeps what is sent (group, message)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.sent.append((group, message))


@pytest.fixture
def layer(monkeypatch: pytest.MonkeyPatch) -> _Layer:
    fake = _Layer()
    monkeypatch.setattr(events, "get_channel_layer", lambda: fake)
    return fake


def _lines(layer: _Layer) -> list[tuple[str, str, str]]:
    return [
        (m["segment"]["role"], m["segment"]["id"], m["segment"]["text"])
        for _, m in layer.sent
        if m["type"] == events.TRANSCRIPT_SEGMENT
    ]


def test_a_final_line_is_published_once_when_it_commits(
    call: Conversation, layer: _Layer, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        record(call, [agent("a1", "Hello"), agent("a1", "Hello, how can I help?", final=True)])
        assert layer.sent == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert _lines(layer) == [("agent", "a1", "Hello, how can I help?")]
    group, message = layer.sent[0]
    assert group == events.organization_group(call.organization_id)
    assert message["organization_id"] == str(call.organization_id)
    assert message["conversation_id"] == str(call.pk)
    assert message["event"] == "transcript"
    assert set(message["segment"]) == {"id", "role", "text", "at"}


def test_interims_and_repeats_are_not_published(
    call: Conversation, layer: _Layer, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        record(call, [user("u1", "I was")])  # a new segment, interim: stored, not published
        record(call, [user("u1", "I was charged")])  # interim of a known one: cache only
    assert layer.sent == []
    with django_capture_on_commit_callbacks(execute=True):
        record(call, [user("u1", "I was charged twice.", final=True)])
        record(call, [user("u1", "I was charged twice.", final=True)])  # a repeat
        record(call, [user("u1", "I was charged", final=False)])  # a late interim
    assert _lines(layer) == [("user", "u1", "I was charged twice.")]


def test_a_rolled_back_batch_publishes_nothing(
    call: Conversation, layer: _Layer, django_capture_on_commit_callbacks: Any
) -> None:
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        record(call, [agent("a1", "Hello.", final=True)])
        raise RuntimeError("the caller's transaction fails")
    assert layer.sent == []


def test_past_the_segment_cap_new_segments_are_dropped_counted_and_logged_once(
    settings: object,
    call: Conversation,
    layer: _Layer,
    django_capture_on_commit_callbacks: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.support.world import TEST_LISTEN_SETTINGS

    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, "MAX_SEGMENTS_PER_CALL": 3}  # type: ignore[attr-defined]
    with (
        django_capture_on_commit_callbacks(execute=True),
        caplog.at_level(logging.WARNING, "anyreach_listen.transcripts"),
    ):
        record(call, [agent("a1", "Hello."), user("u1", "Hi", final=True), agent("a2", "So")])
        # The call holds 3 segments: new ones are refused, whatever they carry.
        over = record(call, [user("u2", "I was"), user("u2", "I was charged.", final=True)])
        # Stored segments still take their updates, in a batch with a refused one too.
        mixed = record(
            call,
            [
                agent("a1", "Hello, how can I help?", final=True),
                agent("a3", "Let me check.", final=True),
                agent("a2", "So sorry"),
            ],
        )
        again = record(call, [agent("a4", "One moment.", final=True)])
    assert (over.recorded, over.unchanged, over.dropped_segments) == (0, 2, 1)
    assert (mixed.recorded, mixed.unchanged, mixed.dropped_segments) == (2, 1, 1)
    assert again.dropped_segments == 1
    assert shown(call) == [
        ("agent", "a1", "Hello, how can I help?", True),
        ("user", "u1", "Hi", True),
        ("agent", "a2", "So sorry", False),
    ]
    call.refresh_from_db()
    assert call.dropped_segments == 3
    # Published: the stored segments' finals only, never a refused one.
    assert _lines(layer) == [("user", "u1", "Hi"), ("agent", "a1", "Hello, how can I help?")]
    capped = [r for r in caplog.records if "MAX_SEGMENTS_PER_CALL" in r.getMessage()]
    assert len(capped) == 1 and str(call.pk) in capped[0].getMessage()


def test_the_segment_cap_is_per_call(settings: object, world: World) -> None:
    from tests.support.world import TEST_LISTEN_SETTINGS

    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, "MAX_SEGMENTS_PER_CALL": 1}  # type: ignore[attr-defined]
    full, other = world.conversations["in_progress"], world.conversations["ringing"]
    record(full, [agent("a1", "Hello.", final=True), agent("a2", "Bye.", final=True)])
    assert record(other, [agent("a1", "Hello.", final=True)]).recorded == 1
    full.refresh_from_db()
    other.refresh_from_db()
    assert (full.dropped_segments, other.dropped_segments) == (1, 0)
    assert other.transcript_segments.count() == 1


def test_read_writes_one_audit_row_per_read(world: World, call: Conversation) -> None:
    record(call, [agent("a1", "Hello.", final=True)])
    audit = {"user": world.users["supervisor"]}
    for _ in range(2):
        read = transcripts.read(call, via=TranscriptVia.PORTAL, audit=audit)
        assert [s.text for s in read] == ["Hello."]
    rows = TranscriptRead.objects.filter(conversation=call)
    assert rows.count() == 2
    assert {(r.user_id, r.via) for r in rows} == {(world.users["supervisor"].pk, "portal")}


# --- glances: live lines shown, audited at most once an hour per person and call ---------


def later(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """The clock (and so the cache's expiry) ``seconds`` on."""
    now = time.time() + seconds
    monkeypatch.setattr(time, "time", lambda: now)


def glance_rows(world: World, role: str = "supervisor") -> list[tuple[str, str, str | None]]:
    rows = TranscriptRead.objects.filter(user=world.users[role]).order_by("read_at")
    return [(str(r.conversation_id), r.via, r.client_ip) for r in rows]


def test_glances_write_one_row_per_call_and_person_an_hour(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    supervisor, qa = world.users["supervisor"], world.users["qa"]
    one, two = world.conversations["in_progress"], world.conversations["ringing"]
    with CaptureQueriesContext(connection) as first:
        disclosure.audit_glances(supervisor, [one.pk, two.pk, one.pk], client_ip="203.0.113.9")
    assert len(first.captured_queries) == 1  # one INSERT for both calls
    assert sorted(glance_rows(world)) == sorted(
        [(str(one.pk), "portal", "203.0.113.9"), (str(two.pk), "portal", "203.0.113.9")]
    )
    with CaptureQueriesContext(connection) as again:
        disclosure.audit_glances(supervisor, [one.pk, str(two.pk)])
    assert again.captured_queries == []  # within the hour: the cache says so, no query
    assert len(glance_rows(world)) == 2
    disclosure.audit_glances(qa, [one.pk])  # another person: a row of their own
    assert glance_rows(world, "qa") == [(str(one.pk), "portal", None)]
    later(monkeypatch, 59 * 60)
    disclosure.audit_glances(supervisor, [one.pk])
    assert len(glance_rows(world)) == 2
    later(monkeypatch, 61 * 60)
    disclosure.audit_glances(supervisor, [one.pk, two.pk])
    assert len(glance_rows(world)) == 4


def test_glances_say_until_when_their_call_is_covered(world: World) -> None:
    supervisor = world.users["supervisor"]
    call = world.conversations["in_progress"]
    before = time.time()
    until = disclosure.audit_glances(supervisor, [call.pk])
    assert set(until) == {str(call.pk)}
    assert before + disclosure.GLANCE_WINDOW <= until[str(call.pk)] <= time.time() + 3600
    # A later glance is covered by the first: the same end, not a new hour.
    assert disclosure.audit_glances(supervisor, [str(call.pk)]) == until


def test_a_portal_read_by_a_person_opens_their_glance_window_an_api_read_does_not(
    world: World, call: Conversation
) -> None:
    supervisor = world.users["supervisor"]
    transcripts.read(call, via=TranscriptVia.PORTAL, audit={"user": supervisor})
    disclosure.audit_glances(supervisor, [call.pk])
    assert TranscriptRead.objects.filter(conversation=call).count() == 1  # the read's row
    qa = world.users["qa"]
    transcripts.read(call, via=TranscriptVia.API, audit={"user": qa})
    disclosure.audit_glances(qa, [call.pk])
    assert sorted(TranscriptRead.objects.filter(user=qa).values_list("via", flat=True)) == [
        "api",
        "portal",
    ]


def test_glances_of_nobody_or_nothing_write_nothing(world: World, call: Conversation) -> None:
    from django.contrib.auth.models import AnonymousUser

    assert disclosure.audit_glances(AnonymousUser(), [call.pk]) == {}
    assert disclosure.audit_glances(world.users["supervisor"], []) == {}
    assert not TranscriptRead.objects.exists()


def test_a_glance_whose_row_fails_is_not_taken_as_audited(
    world: World, call: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    supervisor = world.users["supervisor"]

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the database is away")

    with monkeypatch.context() as patch:
        patch.setattr(TranscriptRead.objects, "bulk_create", broken)
        with pytest.raises(RuntimeError):
            disclosure.audit_glances(supervisor, [call.pk])
    disclosure.audit_glances(supervisor, [call.pk])
    assert glance_rows(world) == [(str(call.pk), "portal", None)]


def test_two_sockets_racing_for_the_same_glance_write_one_row(
    world: World, call: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both saw nothing in the cache; the second to claim the call writes no row."""
    supervisor = world.users["supervisor"]
    with monkeypatch.context() as patch:  # both read the cache before either wrote
        patch.setattr(caches["default"], "get_many", lambda keys: {})
        disclosure.audit_glances(supervisor, [call.pk])
        disclosure.audit_glances(supervisor, [call.pk])
    assert glance_rows(world) == [(str(call.pk), "portal", None)]


def _ended(world: World, days_ago: float, room: str) -> Conversation:
    call = make_conversation(world.org, world.team, ConversationStatus.IN_PROGRESS, room)
    record(call, [agent("a1", "Hello.", final=True), user("u1", "Hi.", final=True)])
    Conversation.objects.filter(pk=call.pk).update(
        status=ConversationStatus.COMPLETED,
        ended_at=timezone.now() - dt.timedelta(days=days_ago),
    )
    return call


def test_purge_deletes_transcripts_past_retention_only_and_is_idempotent(
    world: World, call: Conversation
) -> None:
    alerts.create_rule(world.org, phrase="hello")
    old = _ended(world, 31, "room-old")
    recent = _ended(world, 29, "room-recent")
    record(call, [agent("a1", "Still talking.", final=True)])  # active: kept

    out, _ = run("purge_transcripts")
    assert out.strip() == (
        "purged 2 segment(s) and 1 alert(s) of 1 conversation(s) ended more than 30 day(s) ago"
    )
    assert not old.transcript_segments.exists() and not old.alerts.exists()
    assert recent.transcript_segments.count() == 2 and recent.alerts.count() == 1
    assert call.transcript_segments.count() == 1

    out, _ = run("purge_transcripts")
    assert out.startswith("purged 0 segment(s) and 0 alert(s) of 0 conversation(s)")


def test_purge_follows_the_retention_setting(settings: object, world: World) -> None:
    from tests.support.world import TEST_LISTEN_SETTINGS

    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, "TRANSCRIPT_RETENTION_DAYS": 7}  # type: ignore[attr-defined]
    week_old = _ended(world, 8, "room-week")
    result = transcripts.purge()
    assert (result.conversations, result.segments) == (1, 2)
    assert not week_old.transcript_segments.exists()
