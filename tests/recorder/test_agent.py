"""The recorder job's handling of a transcript stream whose sender the room does not know yet.

A participant that speaks as it joins can have its first stream arrive before its
participant event; its role comes from who it is, so the job waits (briefly) for the
room to know it. Fakes stand in for LiveKit's room and reader (our own logic only;
tests/e2e/test_recorder.py runs the real thing). The coroutines run through
``run_sync``, not pytest-asyncio: after a Playwright test in the same process the
main thread counts as inside a running loop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from livekit import rtc

from anyreach_listen.livekit.service import run_sync
from anyreach_listen.recorder import agent as recorder_agent
from anyreach_listen.transcripts import SegmentIn
from tests.support.processes import ROOT


class FakeReader:
    def __init__(self, text: str, attributes: dict[str, str]) -> None:
        self.info = SimpleNamespace(attributes=attributes, stream_id="TS_1")
        self._text = text

    def __aiter__(self) -> AsyncIterator[str]:
        async def chunks() -> AsyncIterator[str]:
            yield self._text

        return chunks()

    async def read_all(self) -> str:
        return self._text


class FakeWriter:
    def __init__(self) -> None:
        self.updates: list[SegmentIn] = []

    def put(self, update: SegmentIn) -> None:
        self.updates.append(update)


def participant(kind: Any, tracks: tuple[str, ...] = ()) -> SimpleNamespace:
    return SimpleNamespace(kind=kind, track_publications={sid: object() for sid in tracks})


AGENT = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
STANDARD = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
FINAL = {"lk.segment_id": "SG_1", "lk.transcription_final": "true"}


def job(participants: dict[str, Any] | RoomThatChanges) -> tuple[Any, FakeWriter]:
    writer = FakeWriter()
    room = (
        participants
        if isinstance(participants, RoomThatChanges)
        else SimpleNamespace(remote_participants=participants, name="room")
    )
    return recorder_agent._Job(SimpleNamespace(room=room), writer), writer  # type: ignore[arg-type]


class RoomThatChanges:
    """The room as a job sees it: ``before`` at its first look, ``after`` from then on. A
    stream that overtook its sender's join or track, ordered without a timed wait."""

    name = "room"

    def __init__(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        self.before, self.after, self.looks = before, after, 0

    @property
    def remote_participants(self) -> dict[str, Any]:
        self.looks += 1
        return self.before if self.looks == 1 else self.after


def test_a_stream_that_overtakes_its_agents_join_is_the_agents() -> None:
    run_sync(_overtaken_by_the_join())


async def _overtaken_by_the_join() -> None:
    room = RoomThatChanges({}, {"agent-1": participant(AGENT)})
    recording, writer = job(room)
    await recording.receive(FakeReader("Hello there.", FINAL), "agent-1")
    assert room.looks >= 2  # it waited for the join
    assert [(u.role, u.id, u.text, u.final) for u in writer.updates] == [
        ("agent", "SG_1", "Hello there.", True)
    ]


def test_an_agents_stream_naming_its_track_published_later_is_the_agents() -> None:
    run_sync(_overtaken_by_the_track())


async def _overtaken_by_the_track() -> None:
    room = RoomThatChanges(
        {"agent-1": participant(AGENT)}, {"agent-1": participant(AGENT, ("TR_agent",))}
    )
    recording, writer = job(room)
    attributes = {**FINAL, "lk.transcribed_track_id": "TR_agent"}
    await recording.receive(FakeReader("Hi.", attributes), "agent-1")
    assert room.looks >= 2  # it waited for the track
    assert [(u.role, u.text) for u in writer.updates] == [("agent", "Hi.")]


def test_a_sender_never_seen_is_not_waited_for_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recorder_agent, "SENDER_WAIT", 0.1)
    recording, writer = job({})
    run_sync(asyncio.wait_for(recording.receive(FakeReader("Who?", FINAL), "ghost"), timeout=2))
    assert [(u.role, u.text) for u in writer.updates] == [("user", "Who?")]


class ChunkedReader:
    """``size`` characters in ``chunk``-character deltas, final in the trailer (an agent's
    speech); counts the chunks it handed out."""

    def __init__(self, size: int, chunk: int) -> None:
        self.info = SimpleNamespace(
            attributes={"lk.segment_id": "SG_big", "lk.transcription_final": "false"},
            stream_id="TS_big",
        )
        self.size, self.chunk, self.read = size, chunk, 0

    def __aiter__(self) -> AsyncIterator[str]:
        async def chunks() -> AsyncIterator[str]:
            for _ in range(self.size // self.chunk):
                self.read += 1
                yield "x" * self.chunk
            self.info.attributes = {**self.info.attributes, "lk.transcription_final": "true"}

        return chunks()


def test_a_two_megabyte_stream_in_tiny_chunks_is_one_capped_final_and_few_interims() -> None:
    recording, writer = job({"agent-1": participant(AGENT)})
    reader = ChunkedReader(2_000_000, 100)
    run_sync(recording.receive(reader, "agent-1"))
    assert reader.read == 20_000  # read to its end
    finals = [u for u in writer.updates if u.final]
    assert [(u.id, u.role, len(u.text)) for u in finals] == [("SG_big", "agent", 10_000)]
    # At most one interim per chunk that grew the text (100 of them), whatever the
    # clock: the 19,900 chunks past the limit make none (before: 20,000 interims, the
    # last ones 2 MB each).
    assert len(writer.updates) <= 101
    assert all(len(u.text) <= 10_000 for u in writer.updates)


# A worker whose stop never ends (a job thread that does not return, a room that never
# disconnects): run() still exits, past its drain timeout.
HANGING_WORKER = """
import asyncio, django, sys
django.setup()
from anyreach_listen.recorder import agent as recorder_agent

class Server:
    async def run(self, devmode):
        print("running", flush=True)
        await asyncio.Event().wait()

    async def aclose(self):
        await asyncio.Event().wait()

recorder_agent.build_server = lambda *args, **kwargs: Server()
recorder_agent.run("anyreach-recorder", "http://127.0.0.1:9", drain_timeout=0.5)
"""


def test_a_worker_whose_stop_hangs_exits_past_its_drain_timeout() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HANGING_WORKER],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"running\n"
        proc.send_signal(signal.SIGTERM)
        # A deadline for the test only (before: it never exited).
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 1, err.decode()
        assert b"did not stop within 1.5 s: exiting anyway" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# livekit-agents' own warm-up of a job executor (ipc/_preload.py, imported by every job
# runner, a thread's too) after build_server(), with the local models' loaders replaced
# by a note of the call: the recorder reads transcripts, it needs neither model.
WARM_UP = """
import django
django.setup()
import livekit.local_inference as models
loaded = []
models.init_vad = lambda: loaded.append("vad")
models.init_eot = lambda: loaded.append("end-of-turn")
from anyreach_listen.recorder import agent as recorder_agent
recorder_agent.build_server("anyreach-recorder", "http://127.0.0.1:9")
from livekit.agents.ipc import _preload
print(loaded)
"""


def test_a_worker_warms_its_job_runners_up_without_the_local_inference_models() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    env.pop(recorder_agent.PRELOAD_LOCAL_INFERENCE, None)  # livekit-agents' default: load
    result = subprocess.run(
        [sys.executable, "-c", WARM_UP], cwd=ROOT, env=env, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == "[]"
