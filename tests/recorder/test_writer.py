"""The recorder's writer (``recorder/writer.py``): a room's updates delivered to the portal
in arrival order, one request at a time, signed as recorder deliveries; connection
errors, 5xx and 429 retried until they pass, other 4xx dropped and logged, and on
shutdown a bounded wait that names what it could not deliver.

Most tests answer with an ``httpx.MockTransport`` (our retry logic, not a network);
the last delivers through Django's ASGI handler to the real intake.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx
import pytest
from django.core.asgi import get_asgi_application
from livekit import api

from anyreach_listen.api import payloads
from anyreach_listen.api.body_limit import MAX_BODY
from anyreach_listen.api.errors import ApiError
from anyreach_listen.conf import listen_settings
from anyreach_listen.livekit.service import run_sync
from anyreach_listen.models import Conversation, TranscriptSegment
from anyreach_listen.recorder import wire
from anyreach_listen.recorder.wire import RECORDER_IDENTITY, body_hash
from anyreach_listen.recorder.writer import MAX_BATCH_BYTES, Writer
from anyreach_listen.transcripts import SegmentIn
from tests.support.world import World

REAL_SLEEP = asyncio.sleep  # the tests that count the writer's waits replace asyncio.sleep
PORTAL = "http://portal.test"
CONVERSATION_ID = "c0ffee00-0000-4000-8000-000000000001"
NO_WAIT = (0.0,)
UPDATES = [
    SegmentIn("a1", "agent", "Thank", False),
    SegmentIn("a1", "agent", "Thank you.", True),
    SegmentIn("u1", "user", "Hi", True),
]


class Portal:
    """A fake portal: answers from ``answers`` (then 200), records what it was sent."""

    def __init__(self, *answers: int | type[Exception]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[httpx.Request, bool]] = []  # and whether it was a 200
        self.in_flight = 0
        self.most_in_flight = 0
        self.settled = 0  # answers that end a batch: 200, or a 4xx not retried

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await REAL_SLEEP(0.01)  # a request takes time: more updates pile up meanwhile
            answer = self.answers.pop(0) if self.answers else 200
            self.requests.append((request, answer == 200))
            if answer == 200 or (isinstance(answer, int) and 400 <= answer < 500 and answer != 429):
                self.settled += 1
            if not isinstance(answer, int):
                raise answer("portal unreachable")
            if answer == 200:
                segments = json.loads(request.content)["segments"]
                return httpx.Response(200, json={"recorded": len(segments), "unchanged": 0})
            code = {409: "transcript_closed", 429: "rate_limited"}.get(answer, "internal_error")
            return httpx.Response(answer, json={"error": {"code": code, "message": "no"}})
        finally:
            self.in_flight -= 1

    def sent(self) -> list[bytes]:
        return [request.content for request, _ in self.requests]

    def delivered(self) -> list[tuple[str, str, bool]]:
        """(id, text, final) of every update the portal answered 200 for, in order."""
        return [
            (s["id"], s["text"], s["final"])
            for request, ok in self.requests
            if ok
            for s in json.loads(request.content)["segments"]
        ]


async def _until_settled(portal: Portal) -> None:
    """Until the portal has given a batch its last answer (with retries on the way), or a
    deadline."""
    deadline = time.monotonic() + 10
    while not portal.settled:
        assert time.monotonic() < deadline, "no batch was settled"
        await REAL_SLEEP(0.005)


def _write(
    portal: Portal, updates: list[SegmentIn], *, pause_after: int | None = None, **kwargs: Any
) -> Writer:
    client = httpx.AsyncClient(transport=httpx.MockTransport(portal.handle))
    writer = Writer(PORTAL, "room-1", CONVERSATION_ID, client=client,
                    retry_delays=kwargs.pop("retry_delays", NO_WAIT), **kwargs)  # fmt: skip

    async def run() -> None:
        writer.start()
        for index, update in enumerate(updates):
            writer.put(update)
            if index == pause_after:
                await _until_settled(portal)  # that batch goes alone
        await writer.close()
        await client.aclose()

    run_sync(run())
    return writer


def test_updates_are_delivered_in_order_signed_as_a_recorder_delivery() -> None:
    portal = Portal()
    writer = _write(portal, UPDATES, pause_after=0)
    assert portal.delivered() == [(u.id, u.text, u.final) for u in UPDATES]
    assert writer.stored == 3
    assert len(portal.requests) == 2  # the first alone, the two that piled up in one
    verifier = api.TokenVerifier(
        listen_settings.LIVEKIT_API_KEY, listen_settings.LIVEKIT_API_SECRET
    )
    for request, _ in portal.requests:
        assert str(request.url) == f"{PORTAL}/livekit/recorder"
        body = json.loads(request.content)
        assert body["room"] == "room-1"
        assert body["conversation_id"] == CONVERSATION_ID
        scheme, token = request.headers["Authorization"].split()
        claims = verifier.verify(token)
        assert scheme == "Bearer"
        assert (claims.identity, claims.kind) == (RECORDER_IDENTITY, "agent")
        assert claims.sha256 == body_hash(request.content)


def test_connection_errors_5xx_and_429_are_retried_one_request_at_a_time() -> None:
    portal = Portal(httpx.ConnectError, 503, 429, httpx.ReadTimeout, 500)
    writer = _write(portal, UPDATES, pause_after=1)
    assert portal.delivered() == [(u.id, u.text, u.final) for u in UPDATES]
    assert writer.stored == 3
    assert portal.most_in_flight == 1
    # The same first batch was sent six times, then the rest.
    sent = portal.sent()
    assert sent[:6] == [sent[0]] * 6 and len(sent) == 7


def test_backoff_follows_the_delays_and_a_429s_retry_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)
        await REAL_SLEEP(0)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    _write(Portal(503, 503, 503, 503), UPDATES[:1], retry_delays=(0.1, 0.5, 1.0))
    assert slept == [0.1, 0.5, 1.0, 1.0]  # the last delay repeats

    slept.clear()
    portal = Portal(429)
    real_handle = portal.handle

    async def retry_after(request: httpx.Request) -> httpx.Response:
        response = await real_handle(request)
        if response.status_code == 429:
            response.headers["Retry-After"] = "3"
        return response

    portal.handle = retry_after  # type: ignore[method-assign]
    _write(portal, UPDATES[:1], retry_delays=(0.1,))
    assert slept == [3.0]  # the portal's Retry-After, not the shorter delay
    assert portal.delivered() == [("a1", "Thank", False)]


def test_a_4xx_is_dropped_and_logged_and_the_writer_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    portal = Portal(409)
    with caplog.at_level(logging.WARNING, "anyreach_listen.recorder.writer"):
        writer = _write(portal, [UPDATES[0], UPDATES[2]], pause_after=0)
    assert "HTTP 409 transcript_closed" in caplog.text
    assert len(portal.requests) == 2  # not retried
    assert portal.delivered() == [("u1", "Hi", True)]
    assert writer.stored == 1


class StrictPortal(Portal):
    """A fake portal that checks segments as the intake does: one it cannot take gets
    the whole body a 400, and nothing of it is recorded."""

    async def handle(self, request: httpx.Request) -> httpx.Response:
        try:
            payloads.transcript_updates({"segments": json.loads(request.content)["segments"]})
        except ApiError as exc:
            self.requests.append((request, False))
            error = exc.as_response()
            return httpx.Response(error.status_code, content=error.content)
        return await super().handle(request)


def test_one_bad_update_costs_only_itself(caplog: pytest.LogCaptureFixture) -> None:
    """Updates the intake would refuse are made storable and cut to its limits before
    they are sent (a lone surrogate would not even encode); an update it still refuses
    (its id too long) is dropped alone, named in an error, and the others recorded."""
    too_long_id = "s" * (wire.MAX_LABEL + 1)
    updates = [
        SegmentIn("a1", "agent", "Thank you.", True),
        SegmentIn("u1", "user", "I was\x00 charged twice\ud800!", True),
        SegmentIn(too_long_id, "user", "An id no database keeps.", True),
        SegmentIn("u\x00\udc00", "user", "An id made storable.", True),
        SegmentIn("a2", "agent", "x" * (wire.MAX_SEGMENT_TEXT + 5), True),
        SegmentIn("a3", "agent", "\x01" * wire.MAX_SEGMENT_TEXT, True),  # 6 bytes each
        SegmentIn("u2", "user", "Yes.", True),
    ]
    portal = StrictPortal()
    with caplog.at_level(logging.WARNING, "anyreach_listen.recorder.writer"):
        writer = _write(portal, updates)  # all queued at once: one batch, then one by one
    delivered = portal.delivered()
    assert [segment_id for segment_id, _, _ in delivered] == [
        "a1", "u1", "u\ufffd\ufffd", "a2", "a3", "u2"
    ]  # fmt: skip
    assert delivered[1][1] == "I was charged twice\ufffd!"
    assert delivered[3][1] == "x" * wire.MAX_SEGMENT_TEXT
    assert 0 < len(delivered[4][1]) < wire.MAX_SEGMENT_TEXT
    assert all(len(body) <= MAX_BODY for body in portal.sent())
    assert writer.stored == 6
    refused = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(refused) == 1 and too_long_id in refused[0].getMessage()
    assert "invalid_field" in refused[0].getMessage()


def test_on_shutdown_it_gives_up_after_the_flush_timeout_and_names_the_finals(
    caplog: pytest.LogCaptureFixture,
) -> None:
    portal = Portal(*([httpx.ConnectError] * 1000))
    with caplog.at_level(logging.ERROR, "anyreach_listen.recorder.writer"):
        _write(portal, UPDATES, retry_delays=(0.05,), flush_timeout=0.3)
    assert "gave up delivering 3 update(s)" in caplog.text
    assert "['a1', 'u1']" in caplog.text
    assert portal.delivered() == []


def test_a_hanging_portal_holds_the_shutdown_no_longer_than_the_flush_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def never_answers(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()  # takes the request, never answers
        raise AssertionError("not reached")

    client = httpx.AsyncClient(transport=httpx.MockTransport(never_answers))
    writer = Writer(PORTAL, "room-1", CONVERSATION_ID, client=client, flush_timeout=0.3)

    async def run() -> None:
        writer.start()
        for update in UPDATES:
            writer.put(update)
        # The deadline only bounds the test (before: close() waited for ever).
        await asyncio.wait_for(writer.close(), timeout=10)
        await client.aclose()

    with caplog.at_level(logging.ERROR, "anyreach_listen.recorder.writer"):
        run_sync(run())
    assert "gave up delivering 3 update(s) (final segments ['a1', 'u1'])" in caplog.text


def test_a_full_queue_drops_its_oldest_interims_never_a_final(
    caplog: pytest.LogCaptureFixture,
) -> None:
    updates = [
        SegmentIn("a1", "agent", "He", False),
        SegmentIn("b1", "user", "Hi.", True),
        SegmentIn("a1", "agent", "Hello", False),
        SegmentIn("c1", "user", "Yes.", True),
        SegmentIn("d1", "user", "And", False),
        SegmentIn("e1", "user", "No.", True),  # the queue is full (5): a1's "He" goes
        SegmentIn("f1", "user", "Ok.", True),  # a1's "Hello" goes
        SegmentIn("a1", "agent", "Hello there.", True),  # d1's "And" goes
        SegmentIn("g1", "user", "Wait", False),  # only finals wait: this interim goes
        SegmentIn("h1", "user", "Bye.", True),  # a final always goes in
    ]
    portal = Portal()
    with caplog.at_level(logging.WARNING, "anyreach_listen.recorder.writer"):
        # Every update is queued before the writer's task first runs.
        writer = _write(portal, updates, max_queued=5)
    assert portal.delivered() == [
        ("b1", "Hi.", True),
        ("c1", "Yes.", True),
        ("e1", "No.", True),
        ("f1", "Ok.", True),
        ("a1", "Hello there.", True),
        ("h1", "Bye.", True),
    ]
    assert writer.dropped == 4
    # Logged at the first drop, then at most every DROP_LOG_EVERY seconds, and the rest
    # when the writer closes.
    logged = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(logged) == 2, logged
    assert "1 interim update(s) dropped (1 in all)" in logged[0]
    assert "3 interim update(s) dropped (4 in all)" in logged[1]


def test_a_flood_of_interims_keeps_the_queue_at_its_bound_and_the_log_quiet(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flood = [SegmentIn(f"s{i}", "user", "spam", False) for i in range(5_000)]
    portal = Portal()
    with caplog.at_level(logging.WARNING, "anyreach_listen.recorder.writer"):
        writer = _write(portal, [*flood, SegmentIn("u1", "user", "Hi.", True)], max_queued=100)
    delivered = portal.delivered()
    # The newest 99 interims and the final, in order.
    assert delivered == [(u.id, u.text, False) for u in flood[-99:]] + [("u1", "Hi.", True)]
    assert writer.dropped == 4_901
    assert len([r for r in caplog.records if "dropped" in r.getMessage()]) == 2


def test_finals_waiting_are_bounded_by_the_rooms_segment_cap() -> None:
    """Finals are never dropped by the writer: what bounds them is the merger in front of
    it, one final per segment and at most ``MAX_SEGMENTS_PER_CALL`` segments a room."""
    from anyreach_listen.recorder.merge import Merger, Speaker

    merger = Merger(max_segments=50)
    writer = Writer(PORTAL, "room-1", CONVERSATION_ID, max_queued=10)  # the portal is away
    caller = Speaker("caller", False)
    for i in range(5_000):  # a sender's ids, each a new segment, each final at once
        for update in merger.segments(caller, [(f"s{i}", "x" * 100, True)]):
            writer.put(update)
    assert len(writer._queue) == 50 and writer.dropped == 0
    assert merger.dropped == 4_950


def test_batches_stay_under_the_portals_body_limit_in_order() -> None:
    big = [SegmentIn(f"a{i}", "agent", "x" * 9_000, True) for i in range(12)]
    portal = Portal()
    _write(portal, big)
    assert portal.delivered() == [(u.id, u.text, u.final) for u in big]
    assert len(portal.requests) > 1
    assert all(len(body) <= MAX_BATCH_BYTES + 1024 for body in portal.sent())


@pytest.mark.django_db(transaction=True)  # the intake stores from another thread
def test_delivered_through_the_real_intake(world: World) -> None:
    call: Conversation = world.conversations["in_progress"]
    django_app = get_asgi_application()
    transport = httpx.ASGITransport(app=django_app)  # type: ignore[arg-type]
    client = httpx.AsyncClient(transport=transport)
    writer = Writer("http://testserver", str(call.livekit_room), str(call.pk), client=client)

    async def run() -> None:
        writer.start()
        for update in UPDATES:
            writer.put(update)
        await writer.close()
        await client.aclose()

    run_sync(run())
    rows = TranscriptSegment.objects.filter(conversation=call).order_by("position")
    assert [(s.segment_id, s.text, s.final) for s in rows] == [
        ("a1", "Thank you.", True),
        ("u1", "Hi", True),
    ]
    assert writer.stored == 3
