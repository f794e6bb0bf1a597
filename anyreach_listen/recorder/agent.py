"""The recorder as a LiveKit agent worker (``manage.py run_recorder``).

The worker registers with LiveKit for explicit dispatch and joins a call's room only when
dispatched there (``recorder/dispatch.py``), to hear its transcripts. It needs the
optional ``recorder`` extra (livekit-agents); nothing else in the app imports this
module, so the app works without it. Details: docs/internals/recorder.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Container
from dataclasses import dataclass

from livekit import rtc
from livekit.agents import (
    AgentServer,
    AutoSubscribe,
    JobContext,
    JobExecutorType,
    JobRequest,
    WorkerPermissions,
)

from anyreach_listen.conf import listen_settings
from anyreach_listen.recorder.merge import (
    ATTR_SEGMENT_ID,
    ATTR_TRACK_ID,
    NOBODY,
    TOPIC,
    Merger,
    Speaker,
    stream_speaker,
)
from anyreach_listen.recorder.writer import Writer, announce_registered

logger = logging.getLogger(__name__)

PERMISSIONS = WorkerPermissions(
    can_publish=False,
    can_subscribe=True,
    can_publish_data=False,
    can_update_metadata=False,
    hidden=True,
)
# livekit-agents warms every job executor up with its local inference models unless this
# variable says no (ipc/_preload.py): the VAD and the end-of-turn weights, about 250 MB of
# the worker's 430 MB when its jobs run on threads of this process. The recorder reads
# transcripts only; it runs neither.
PRELOAD_LOCAL_INFERENCE = "LIVEKIT_AGENTS_PRELOAD_LOCAL_INFERENCE"
IDENTITY_PREFIX = "recorder-"
ACCEPT_HOLD = 15.0  # seconds a room accepted but not running yet counts as taken
SENDER_WAIT = 2.0  # seconds a transcript stream waits for its sender to be known
DRAIN_TIMEOUT = 10.0  # seconds a stopping worker gives its rooms (run_recorder --drain-timeout)
STREAMS_WAIT = 2.0  # of which, at most, open streams get to end by themselves
LEAVE_MARGIN = 1.0  # seconds past the drain timeout the worker gets to leave and close


@dataclass(frozen=True)
class _Publisher:
    identity: str
    is_agent: bool
    track_sids: Container[str]


def _publishers(room: rtc.Room) -> dict[str, _Publisher]:
    return {
        identity: _Publisher(
            identity,
            p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT,
            set(p.track_publications),
        )
        for identity, p in room.remote_participants.items()
    }


def _speaker(participant: rtc.Participant | None) -> Speaker:
    if participant is None:
        return NOBODY
    return Speaker(
        participant.identity, participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
    )


def _conversation_id(metadata: str) -> str | None:
    """The conversation the dispatch names (``recorder/dispatch.py``'s ``Target.metadata``); None:
    the portal takes the room's active one."""
    try:
        wanted = json.loads(metadata).get("conversation_id") if metadata else None
        return str(uuid.UUID(str(wanted))) if wanted else None
    except (ValueError, AttributeError):
        return None


class _Job:
    """One room's recording: the room's events into the merger, its updates into the writer."""

    def __init__(
        self, ctx: JobContext, writer: Writer, drain_timeout: float = DRAIN_TIMEOUT
    ) -> None:
        self.ctx = ctx
        self.writer = writer
        self.drain_timeout = drain_timeout
        self.merger = Merger()
        self.tasks: set[asyncio.Task[None]] = set()

    def attach(self) -> None:
        room = self.ctx.room
        # Before connecting: a stream that starts as we join is not missed.
        room.on("transcription_received", self.on_segments)
        room.register_text_stream_handler(TOPIC, self.on_stream)

    def on_segments(
        self,
        segments: list[rtc.TranscriptionSegment],
        participant: rtc.Participant | None,
        publication: rtc.TrackPublication | None,
    ) -> None:
        # LiveKit forwards legacy transcriptions from agents only; the participant is
        # the one the agent names as transcribed (its own speech, or the user's).
        speaker = _speaker(participant)
        for update in self.merger.segments(speaker, ((s.id, s.text, s.final) for s in segments)):
            self.writer.put(update)

    def on_stream(self, reader: rtc.TextStreamReader, sender_identity: str) -> None:
        task = asyncio.create_task(self.receive(reader, sender_identity))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def receive(self, reader: rtc.TextStreamReader, sender_identity: str) -> None:
        attributes = reader.info.attributes or {}
        track_sid = attributes.get(ATTR_TRACK_ID)
        await self.known(sender_identity, track_sid)
        speaker = stream_speaker(_publishers(self.ctx.room), sender_identity, track_sid)
        if speaker is None:  # claims a track it does not own: never recorded
            await _drain(reader)
            return
        segment_id = attributes.get(ATTR_SEGMENT_ID) or reader.info.stream_id
        await self.consume(reader, segment_id, speaker)

    async def known(self, sender_identity: str, track_sid: str | None) -> None:
        """Wait, at most ``SENDER_WAIT``, until the room knows the stream's sender and the
        track it names: a stream can overtake its sender's participant or track event
        (one that speaks as it joins), and who sent it decides its role."""
        room = self.ctx.room
        deadline = time.monotonic() + SENDER_WAIT
        while time.monotonic() < deadline:
            publishers = room.remote_participants
            sender_known = sender_identity in publishers
            if sender_known and (
                not track_sid or any(track_sid in p.track_publications for p in publishers.values())
            ):
                return
            await asyncio.sleep(0.02)

    async def consume(
        self, reader: rtc.TextStreamReader, segment_id: str, speaker: Speaker
    ) -> None:
        updates = self.merger.stream(
            segment_id, speaker, reader, lambda: reader.info.attributes or {}
        )
        async for update in updates:
            self.writer.put(update)

    async def close(self) -> None:
        # Within the drain timeout: the streams still open end with what they carried,
        # and the writer delivers what is queued.
        deadline = time.monotonic() + self.drain_timeout
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=min(STREAMS_WAIT, self.drain_timeout / 4))
        await self.writer.close(timeout=max(0.0, deadline - time.monotonic()))
        logger.info(
            "Recorder left room %s: %d update(s) stored", self.ctx.room.name, self.writer.stored
        )


async def _drain(reader: rtc.TextStreamReader) -> None:
    # Read to the end: an unread reader keeps its subscription (livekit's docs).
    await reader.read_all()


def _entrypoint(
    portal_url: str, drain_timeout: float = DRAIN_TIMEOUT
) -> Callable[[JobContext], Awaitable[None]]:
    async def entrypoint(ctx: JobContext) -> None:
        room_name = ctx.job.room.name
        conversation_id = _conversation_id(ctx.job.metadata)
        # Deliveries go to the portal, which records them (no database here).
        writer = Writer(portal_url, room_name, conversation_id)
        writer.start()
        job = _Job(ctx, writer, drain_timeout)
        job.attach()
        ctx.add_shutdown_callback(job.close)
        await ctx.connect(auto_subscribe=AutoSubscribe.SUBSCRIBE_NONE)
        logger.info(
            "Recorder %s recording room %s (conversation %s)",
            ctx.room.local_participant.identity,
            room_name,
            conversation_id or "the room's active one",
        )

    return entrypoint


class _Rooms:
    """The rooms this worker records or has just accepted (one job per room per worker)."""

    def __init__(self, server: AgentServer) -> None:
        self.server = server
        self.accepted: dict[str, float] = {}
        self.lock = threading.Lock()

    def claim(self, room: str) -> bool:
        now = time.monotonic()
        running = {job.job.room.name for job in self.server.active_jobs}
        with self.lock:
            self.accepted = {r: t for r, t in self.accepted.items() if now - t < ACCEPT_HOLD}
            if room in running or room in self.accepted:
                return False
            self.accepted[room] = now
            return True


def build_server(
    agent_name: str,
    portal_url: str,
    *,
    http_port: int = 0,
    max_jobs: int = 200,
    drain_timeout: float = DRAIN_TIMEOUT,
) -> AgentServer:
    """The worker: hidden, subscribe-only, explicit dispatch by ``agent_name``; delivers
    to the portal at ``portal_url``; on shutdown its jobs get ``drain_timeout`` seconds."""
    # Read when the first job executor starts, after this: the whole process is the worker's.
    os.environ[PRELOAD_LOCAL_INFERENCE] = "0"
    server = AgentServer(
        job_executor_type=JobExecutorType.THREAD,
        permissions=PERMISSIONS,
        ws_url=listen_settings.LIVEKIT_URL,
        api_key=listen_settings.LIVEKIT_API_KEY,
        api_secret=listen_settings.LIVEKIT_API_SECRET,
        load_threshold=1.0,
        num_idle_processes=2,
        port=http_port,  # 0: any free port (several recorders on one machine)
        # How long a job's shutdown is waited for before it is logged as late (a job
        # thread cannot be killed: run() bounds the whole stop instead).
        shutdown_process_timeout=drain_timeout + LEAVE_MARGIN,
    )
    # Load is jobs over capacity, not CPU: a busy machine must not refuse calls.
    server.load_fnc = lambda: len(server.active_jobs) / max_jobs
    rooms = _Rooms(server)

    async def on_request(request: JobRequest) -> None:
        if not rooms.claim(request.room.name):
            # Not terminate (the default): LiveKit then offers the job to another worker.
            await request.reject(terminate=False)
            return
        await request.accept(identity=f"{IDENTITY_PREFIX}{request.id}", name="Recorder")

    def on_registered(worker_id: str, server_info: object) -> None:
        # A worker that (re)starts has the portal fill the live calls that lack a recorder
        # now, not at the next sweep: e.g. the calls that opened while no worker was up.
        threading.Thread(
            target=announce_registered,
            args=(portal_url, worker_id),
            name="recorder-catch-up",
            daemon=True,
        ).start()

    server.on("worker_registered", on_registered)
    server.rtc_session(
        _entrypoint(portal_url, drain_timeout), agent_name=agent_name, on_request=on_request
    )
    return server


def run(
    agent_name: str, portal_url: str, *, http_port: int = 0, drain_timeout: float = DRAIN_TIMEOUT
) -> None:
    """Run the worker until SIGTERM, SIGINT or SIGHUP; then leave every room at once.

    No waiting for calls to end: a call can last an hour. Leaving is a clean
    participant_left, on which the app dispatches another recorder to the room
    (``recorder/dispatch.py``). The drain is what was heard being delivered, for at
    most ``drain_timeout`` seconds (what is left undelivered then is logged); the
    process exits ``LEAVE_MARGIN`` seconds later at the latest, whatever still runs.
    """
    server = build_server(agent_name, portal_url, http_port=http_port, drain_timeout=drain_timeout)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        running = asyncio.create_task(server.run(devmode=False))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
        try:
            await asyncio.wait_for(server.aclose(), timeout=drain_timeout + LEAVE_MARGIN)
        except TimeoutError:
            # A job that does not end (a room that never disconnects) runs on a thread
            # that cannot be stopped and would hold the interpreter's exit: go now.
            logger.error(
                "Recorder did not stop within %.1f s: exiting anyway",
                drain_timeout + LEAVE_MARGIN,
            )
            logging.shutdown()
            os._exit(1)
        if running.done() and not stopped.done():
            running.result()  # the worker failed (e.g. LiveKit unreachable): raise it
        running.cancel()

    asyncio.run(main())
