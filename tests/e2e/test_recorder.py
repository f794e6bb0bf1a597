"""The transcript recorder on the real stack: LiveKit's agent dispatch, real workers.

Recorders dispatched into a simulated call's room store its whole script in spoken
order while staying hidden; one killed outright mid-call loses nothing and is replaced;
on the embedded defaults a supervisor's websocket gets every recorded line and alert;
and a huge stream in tiny chunks is recorded as one capped final. Measured times are
printed (run with ``-s``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import pytest
from livekit import api

from anyreach_listen.livekit.service import run_sync
from anyreach_listen.recorder.wire import MAX_SEGMENT_TEXT
from demo.call_simulator import ATTR_FINAL, ATTR_SEGMENT_ID, DEFAULT_SCRIPT, TOPIC_TRANSCRIPTION
from tests.e2e.rogue import RogueCaller
from tests.support.processes import ProcessInfo, descendants, wait_until
from tests.support.stack import Stack, recorders, simulated_call

pytestmark = pytest.mark.e2e

RECORDER_PREFIX = "recorder-"


def _participants(stack: Stack, room: str) -> list[api.ParticipantInfo]:
    async def listed() -> list[api.ParticipantInfo]:
        lk = stack.livekit
        async with api.LiveKitAPI(lk.http_url, lk.api_key, lk.api_secret) as client:
            response = await client.room.list_participants(api.ListParticipantsRequest(room=room))
            return list(response.participants)

    return run_sync(listed())


def _recorders_in(stack: Stack, room: str) -> list[api.ParticipantInfo]:
    return [p for p in _participants(stack, room) if p.identity.startswith(RECORDER_PREFIX)]


def _transcript(stack: Stack, conversation_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{stack.base_url}/core/conversations/{conversation_id}/transcript",
        headers={"Authorization": f"Bearer {stack.seed['api_keys']['read_sensitive']}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def _spoken(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(segment id, role, text) of every turn the call spoke, in order."""
    ids = {role: iter(report["segments"][role]) for role in ("agent", "user")}
    turns = [DEFAULT_SCRIPT[k % len(DEFAULT_SCRIPT)] for k in range(report["turns"])]
    return [(next(ids[t.role]), t.role, t.text) for t in turns]


def _settled(stack: Stack, conversation_id: str, expected: int) -> dict[str, Any]:
    """The transcript once the call ended and its last final segment is stored."""
    return wait_until(
        lambda: (
            (t := _transcript(stack, conversation_id))["complete"]
            and sum(s["final"] for s in t["segments"]) >= expected
            and t
        ),
        timeout=30,
        interval=0.25,
        what="the whole transcript stored",
    )


def _assert_whole_script(transcript: dict[str, Any], report: dict[str, Any]) -> None:
    spoken = _spoken(report)
    segments = transcript["segments"]
    assert transcript["complete"] is True
    assert [(s["id"], s["role"], s["text"]) for s in segments] == spoken, segments
    assert all(s["final"] for s in segments), segments
    assert len({s["id"] for s in segments}) == len(segments)


@dataclass
class RecordedCall:
    report: dict[str, Any]
    transcript: dict[str, Any]
    recorders_seen: list[api.ParticipantInfo]
    recorder_logs: str
    worker_children: list[ProcessInfo]  # the processes the worker had started, mid-call


@pytest.fixture(scope="module")
def recorded_call(stack: Stack) -> Iterator[RecordedCall]:
    """One call of the default script with one recorder worker running."""
    with recorders(stack, 1) as pool, simulated_call(stack) as call:
        seen = wait_until(
            lambda: _recorders_in(stack, call.room_name),
            timeout=30,
            what="the recorder in the room",
        )
        children = descendants(pool.procs[0].pid)
        assert call.wait(timeout=120) == 0, call.log()
        report = call.report()
        transcript = _settled(stack, call.conversation_id, len(_spoken(report)))
        recorded = RecordedCall(report, transcript, seen, pool.log(0), children)
    # The worker is stopped before the module's other tests start theirs.
    yield recorded


def test_the_transcript_api_returns_the_whole_script_in_order(
    recorded_call: RecordedCall,
) -> None:
    report, transcript = recorded_call.report, recorded_call.transcript
    assert report["turns"] == len(DEFAULT_SCRIPT)
    _assert_whole_script(transcript, report)
    assert {s["role"] for s in transcript["segments"]} == {"agent", "user"}


def test_the_recorder_is_hidden_and_publishes_nothing(recorded_call: RecordedCall) -> None:
    report = recorded_call.report
    (recorder,) = recorded_call.recorders_seen
    # LiveKit's view: a hidden agent of our agent name that may not publish and has not.
    assert recorder.permission.hidden is True
    assert recorder.permission.can_publish is False
    assert recorder.permission.can_publish_data is False
    assert recorder.kind == api.ParticipantInfo.Kind.AGENT
    assert recorder.attributes["lk.agent_name"] == "anyreach-recorder"
    assert list(recorder.tracks) == []
    # The call's view: neither party ever saw it, nor received anything from it.
    seen = set(report["seen_by_agent"]) | set(report["seen_by_caller"])
    assert seen == {report["agent_identity"], report["caller_identity"]}, seen
    assert report["data_from"] == {"agent": [], "user": []}, report["data_from"]
    # It subscribed to nothing (no audio): the worker log names no track subscription.
    assert "track_subscribed" not in recorded_call.recorder_logs


def test_the_recorder_records_on_a_thread_of_its_own_process(
    recorded_call: RecordedCall,
) -> None:
    # No job or inference process is forked: a room's job runs on a thread (the worker
    # process is the unit of crash isolation: a killed worker's rooms get another
    # recorder, below). Its models: tests/recorder/test_agent.py.
    assert recorded_call.worker_children == [], recorded_call.worker_children


def _wait_for_final_segments(stack: Stack, conversation_id: str, count: int) -> None:
    # Polled in the database: ten API reads a second would meet the credential's read limit.
    wait_until(
        lambda: len(_final_times(stack, conversation_id)) >= count,
        timeout=30,
        interval=0.1,
        what=f"{count} final segments",
    )


def _final_times(stack: Stack, conversation_id: str) -> dict[str, float]:
    rows = stack.query(
        "SELECT segment_id, final_at FROM anyreach_listen_transcriptsegment s "
        "JOIN anyreach_listen_conversation c ON c.id = s.conversation_id "
        "WHERE c.id = ? AND s.final",
        conversation_id.replace("-", ""),
    )
    return {
        r["segment_id"]: dt.datetime.fromisoformat(r["final_at"]).replace(tzinfo=dt.UTC).timestamp()
        for r in rows
    }


def test_a_recorder_killed_mid_call_loses_nothing_and_is_replaced(stack: Stack) -> None:
    # Three workers for PER_ROOM = 2: the room's two recorders, and a free one to
    # take the replacement (a worker records a room at most once).
    with recorders(stack, 3) as pool, simulated_call(stack, "--duration", "40") as call:
        room = call.room_name
        wait_until(
            lambda: len(_recorders_in(stack, room)) == 2 and len(pool.recording(room)) == 2,
            timeout=30,
            what="two recorders in the room",
        )
        _wait_for_final_segments(stack, call.conversation_id, 2)
        before = {p.identity for p in _recorders_in(stack, room)}
        victim = pool.recording(room)[0]
        pool.kill(victim)
        killed = time.monotonic()
        stored_at_kill = set(_final_times(stack, call.conversation_id))
        replacement = wait_until(
            lambda: {p.identity for p in _recorders_in(stack, room)} - before,
            timeout=60,
            interval=0.1,
            what="a replacement recorder in the room",
        )
        replaced_after = time.monotonic() - killed
        assert call.wait(timeout=120) == 0, call.log()
        report = call.report()
        transcript = _settled(stack, call.conversation_id, len(_spoken(report)))
        finals = _final_times(stack, call.conversation_id)
        workers = pool.recording(room)

    _assert_whole_script(transcript, report)
    stored_after_kill = set(finals) - stored_at_kill
    print(
        f"\nrecorder killed (SIGKILL) mid-call: replacement {sorted(replacement)} in the room "
        f"after {replaced_after:.1f} s; {len(stored_after_kill)} final segments stored after "
        f"the kill; {len(report['segments']['agent'])} agent + "
        f"{len(report['segments']['user'])} caller segments spoken, all stored once"
    )
    # The replacement ran on the third worker (the survivor refused a second job there).
    assert len(workers) == 3 and victim in workers, workers
    # Recording went on past the kill (the whole script is stored, checked above).
    assert stored_after_kill


# --- the cross-process path on the embedded defaults ----------------------------------


def _session_cookie(stack: Stack, role: str) -> str:
    """Sign in through the portal's login form; the session cookie, as a Cookie header."""
    login = stack.seed["users"][role]
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        client.get("/accounts/login/")
        response = client.post(
            "/accounts/login/",
            data={
                "username": login["username"],
                "password": login["password"],
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
            },
        )
        assert response.status_code == 302, response.text
        return f"sessionid={client.cookies['sessionid']}"


class EventStream:
    """A supervisor's portal websocket on daphne, read on a thread of its own."""

    def __init__(self, stack: Stack, cookie: str) -> None:
        self.url = stack.base_url.replace("http://", "ws://") + "/ws/listen/events/"
        self.origin, self.cookie = stack.base_url, cookie
        self.messages: list[dict[str, Any]] = []
        self.open = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: run_sync(self._read()), daemon=True)

    async def _read(self) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(
                self.url, headers={"Cookie": self.cookie}, origin=self.origin, heartbeat=10
            ) as ws,
        ):
            self.open.set()
            while not self.stop.is_set():
                try:
                    message = await ws.receive(timeout=0.2)
                except TimeoutError:
                    continue
                if message.type != aiohttp.WSMsgType.TEXT:
                    break  # closed by the server
                self.messages.append(json.loads(message.data))

    def __enter__(self) -> EventStream:
        self.thread.start()
        assert self.open.wait(15), "the portal websocket did not open"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)

    def of(self, conversation_id: str, kind: str) -> list[dict[str, Any]]:
        return [
            m
            for m in list(self.messages)
            if m.get("type") == kind and m.get("conversation", {}).get("id") == conversation_id
        ]


def test_the_portals_websockets_get_the_recorders_lines_and_alerts_on_the_embedded_defaults(
    stack: Stack,
) -> None:
    # The embedded defaults: the in-memory channel layer and the local-memory cache, so
    # only what happens in daphne's process reaches daphne's websockets. The recorder,
    # another process, delivers to daphne, which records and publishes.
    assert "REDIS_URL" not in stack.env and not os.environ.get("REDIS_URL")
    cookie = _session_cookie(stack, "supervisor")
    with recorders(stack, 1), EventStream(stack, cookie) as stream, simulated_call(stack) as call:
        assert call.wait(timeout=120) == 0, call.log()
        spoken = _spoken(call.report())
        _settled(stack, call.conversation_id, len(spoken))

        def every_line() -> list[dict[str, Any]] | None:
            got = stream.of(call.conversation_id, "transcript.segment")
            return got if len(got) >= len(spoken) else None

        lines = wait_until(
            every_line,
            timeout=15,
            interval=0.1,
            what="every recorded line on the supervisor's websocket",
        )
        alerts = wait_until(
            lambda: stream.of(call.conversation_id, "alert.raised"),
            timeout=15,
            interval=0.1,
            what="the seeded rule's alert on the supervisor's websocket",
        )
    # Every final line once, in spoken order, as the portal recorded it.
    assert [(m["segment"]["id"], m["segment"]["role"], m["segment"]["text"]) for m in lines] == (
        spoken
    )
    (alert,) = alerts
    assert alert["alert"]["phrase"] == "charged twice"
    assert alert["alert"]["role"] == "user"
    complaint = next(s for s in spoken if "charged twice" in s[2])
    assert alert["alert"]["segment_id"] == complaint[0]


# --- a stream of any size, in any chunks ----------------------------------------------


def test_a_two_megabyte_stream_in_tiny_chunks_is_recorded_as_one_capped_final(
    stack: Stack,
) -> None:
    # A participant allowed to publish data (the caller's token) sends 2 MB as one
    # lk.transcription stream in 100-character chunks.
    with (
        recorders(stack, 1) as pool,
        simulated_call(stack, "--duration", "40") as call,
        RogueCaller(stack.livekit, call.room_name) as rogue,
    ):
        wait_until(lambda: pool.recording(call.room_name), timeout=30, what="the recorder")

        async def send() -> None:
            assert rogue.room is not None
            writer = await rogue.room.local_participant.stream_text(
                topic=TOPIC_TRANSCRIPTION,
                attributes={ATTR_SEGMENT_ID: "SG_big", ATTR_FINAL: "false"},
            )
            for _ in range(20_000):
                await writer.write("x" * 100)
            await writer.aclose(attributes={ATTR_FINAL: "true"})

        started = time.monotonic()
        rogue.run(send(), timeout=120)
        print(f"\n2 MB sent in 20,000 chunks in {time.monotonic() - started:.1f} s")
        rows = wait_until(
            lambda: stack.query(
                "SELECT role, text, final FROM anyreach_listen_transcriptsegment "
                "WHERE conversation_id = ? AND segment_id = 'SG_big' AND final",
                call.conversation_id.replace("-", ""),
            ),
            timeout=30,
            interval=0.25,
            what="the stream's final segment",
        )
        log = pool.log(0)
    ((role, text, final),) = [tuple(r) for r in rows]
    assert (role, final) == ("user", 1)
    assert text == "x" * MAX_SEGMENT_TEXT
    # Cut as the stream grew, not built whole and cut on its way out (before: the
    # writer fitted a final of 2,000,000 characters).
    assert "fitted to the portal's limits" not in log, log[-2000:]
