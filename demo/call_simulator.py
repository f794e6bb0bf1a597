"""A realistic simulated call in a LiveKit room: an AI agent and a caller talking.

Both sides publish real synthesized speech in real time, and the agent publishes both
sides' transcripts as LiveKit agents do (legacy transcriptions and ``lk.transcription``
streams). It obeys supervisors' signed orders (``signing.receive``): ``say`` cuts the line
in progress and speaks the text now; ``whisper`` makes its next line begin "Noted.";
``pause`` silences it (its turns skipped, the caller's still transcribed) until ``resume``,
when it says ``PICKUP_LINE`` and goes on. ``manage.py simulate_call`` runs ``run_call``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
import uuid
import wave
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from livekit import api, rtc

from anyreach_listen.assist import signing
from anyreach_listen.livekit.service import delete_room, livekit_api

logger = logging.getLogger(__name__)

SAMPLE_RATE = 48_000
FRAME_MS = 10
SAMPLES_PER_FRAME = SAMPLE_RATE * FRAME_MS // 1000
TOPIC_TRANSCRIPTION = "lk.transcription"
TOPIC_CHAT = "lk.chat"
ATTR_SEGMENT_ID = "lk.segment_id"
ATTR_FINAL = "lk.transcription_final"
ATTR_TRACK_ID = "lk.transcribed_track_id"
PAUSE_BETWEEN_TURNS = 0.4  # seconds of silence between turns
# What the agent's next line begins with after a whisper: audible to a supervisor, and
# nothing of the private instruction reaches the caller.
WHISPER_ACKNOWLEDGEMENT = "Noted."
CUT_WAIT = 1.0  # seconds a say or a pause waits for the line it cut to stop
# What the agent says when a supervisor hands the call back to it.
PICKUP_LINE = "Thanks for holding, I'm back with you."
TAKEN_OVER = "taken over: the agent is paused until the call is handed back"

Role = Literal["agent", "user"]
VOICES: dict[Role, str] = {"agent": "en-us+f3", "user": "en+m3"}


@dataclass(frozen=True)
class Turn:
    role: Role
    text: str


DEFAULT_SCRIPT: tuple[Turn, ...] = (
    Turn("agent", "Thank you for calling Acme support, this is Ava. How can I help you today?"),
    Turn("user", "Hi, I was charged twice for my order last week."),
    Turn("agent", "I am sorry about that. Could you tell me the order number?"),
    Turn("user", "Sure, it is four five seven two one."),
    Turn("agent", "Thanks. I see the duplicate charge, and I have issued a refund."),
    Turn("user", "Great, thank you so much."),
    Turn("agent", "You are welcome. Is there anything else I can help you with?"),
    Turn("user", "No, that is all. Bye."),
)


# --- speech ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    pcm: bytes  # 48 kHz mono signed 16-bit little-endian

    @property
    def duration(self) -> float:
        return len(self.pcm) / 2 / SAMPLE_RATE


def speech_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "anyreach-listen" / "speech"


def _require(tool: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise RuntimeError(f"{tool} is not installed (make system-packages installs it).")
    return found


def synthesize(text: str, voice: str, cache_dir: Path | None = None) -> Clip:
    """Speak ``text`` with espeak-ng, convert with sox, cache the WAV by content."""
    cache_dir = cache_dir or speech_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(f"{voice}\0{text}".encode()).hexdigest()[:20]
    target = cache_dir / f"{digest}.wav"
    if not target.exists():
        espeak, sox = _require("espeak-ng"), _require("sox")
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            raw, converted = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
            subprocess.run(  # noqa: S603 - fixed tools, text passed as one argument
                [espeak, "-v", voice, "-s", "165", "-w", str(raw), text],
                check=True,
                capture_output=True,
            )
            subprocess.run(  # noqa: S603
                [sox, str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed",
                 str(converted)],
                check=True,
                capture_output=True,
            )  # fmt: skip
            converted.replace(target)  # atomic: concurrent runs never read half a file
    with wave.open(str(target), "rb") as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (SAMPLE_RATE, 1, 2):
            raise RuntimeError(f"{target} is not 48 kHz mono 16-bit")
        return Clip(wav.readframes(wav.getnframes()))


# --- the call ----------------------------------------------------------------------------


class Stopped(Exception):
    """The call was asked to stop (Ctrl-C, or the test's stop event)."""


@dataclass
class CallConfig:
    url: str
    api_key: str
    api_secret: str
    room_name: str
    agent_identity: str = "agent-ava"
    agent_name: str = "Ava (AI agent)"
    caller_identity: str = "caller"
    caller_name: str = "Caller"
    script: Sequence[Turn] = DEFAULT_SCRIPT
    # Seconds of speech to run: the script repeats until this much time has passed
    # (the turn in progress is finished). None: the script once.
    duration: float | None = None
    loop: bool = False  # repeat the script until stopped
    delete_room: bool = True
    cache_dir: Path | None = None

    @property
    def api_url(self) -> str:
        return self.url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)


@dataclass
class CallReport:
    room_name: str
    agent_identity: str
    caller_identity: str
    turns: int = 0
    segments: dict[str, list[str]] = field(default_factory=lambda: {"agent": [], "user": []})
    # Every remote identity each side ever saw in its room (a hidden listener must not appear).
    seen_by_agent: set[str] = field(default_factory=set)
    seen_by_caller: set[str] = field(default_factory=set)
    # Who sent each side data packets or chat text (a listener cannot publish).
    data_from: dict[str, list[str]] = field(default_factory=lambda: {"agent": [], "user": []})
    # Supervisors' orders as the agent answered them (guidance, pause and resume):
    # {"id", "mode", "status", "reason"?}, and the segments of the lines it said for `say`
    # orders (not in ``segments``).
    guidance: list[dict[str, str]] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    # Taken over: the agent's turns skipped while paused (not in ``turns``), and the
    # segments of its PICKUP_LINE after each resume (not in ``segments``).
    skipped: int = 0
    picked_up: list[str] = field(default_factory=list)

    def as_json(self) -> str:
        return json.dumps(
            {
                "room_name": self.room_name,
                "agent_identity": self.agent_identity,
                "caller_identity": self.caller_identity,
                "turns": self.turns,
                "segments": self.segments,
                "seen_by_agent": sorted(self.seen_by_agent),
                "seen_by_caller": sorted(self.seen_by_caller),
                "data_from": self.data_from,
                "guidance": self.guidance,
                "said": self.said,
                "skipped": self.skipped,
                "picked_up": self.picked_up,
            }
        )


def _token(config: CallConfig, identity: str, name: str, *, agent: bool) -> str:
    token = (
        api.AccessToken(config.api_key, config.api_secret)
        .with_identity(identity)
        .with_name(name)
        .with_grants(
            api.VideoGrants(
                room_join=True,
                room=config.room_name,
                can_publish=True,
                can_subscribe=True,
                can_publish_data=True,
            )
        )
    )
    if agent:
        token = token.with_kind("agent")
    return token.to_jwt()


@dataclass
class _Speaker:
    role: Role
    room: rtc.Room
    source: rtc.AudioSource
    track_sid: str
    identity: str


@dataclass(eq=False)
class _Line:
    """One utterance being spoken; a supervisor's ``say`` or ``pause`` cuts it short."""

    role: Role
    cut: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class _Call:
    def __init__(self, config: CallConfig, stop: asyncio.Event) -> None:
        self.config = config
        self.stop = stop
        self.report = CallReport(config.room_name, config.agent_identity, config.caller_identity)
        self.clips: dict[Turn, Clip] = {}
        self.agent: _Speaker | None = None
        self.lines: set[_Line] = set()  # being spoken now
        # Agent lines beside the script (a `say`, synthesized or spoken; a pickup line).
        self.says: set[asyncio.Task[None]] = set()
        # Order ids applied: a retried order is answered, not redone.
        self.applied = signing.RecentIds()
        self.whispered = False  # the agent's next line acknowledges a whisper
        self.acknowledgement = Clip(b"")
        self.pickup = Clip(b"")
        self.paused = False  # taken over: the agent's turns are skipped
        self.handed_back = asyncio.Event()  # set by a resume: ends a skipped turn's silence

    async def sleep_until(self, deadline: float, cut: asyncio.Event | None = None) -> bool:
        """Wait until ``deadline``; True as soon as ``cut`` is set. Raises ``Stopped``."""
        if self.stop.is_set():
            raise Stopped
        if cut is not None and cut.is_set():
            return True
        delay = deadline - time.monotonic()
        if delay <= 0:
            return False
        if cut is None:  # the audio's 10 ms pacing: no extra task per frame
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=delay)
            except TimeoutError:
                return False
            raise Stopped
        waiters = {asyncio.ensure_future(self.stop.wait()), asyncio.ensure_future(cut.wait())}
        try:
            await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if self.stop.is_set():
            raise Stopped
        return cut.is_set()

    async def join(self, role: Role) -> _Speaker:
        cfg = self.config
        agent = role == "agent"
        identity = cfg.agent_identity if agent else cfg.caller_identity
        name = cfg.agent_name if agent else cfg.caller_name
        room = rtc.Room()
        seen = self.report.seen_by_agent if agent else self.report.seen_by_caller

        @room.on("participant_connected")
        def _on_participant(participant: rtc.RemoteParticipant) -> None:
            seen.add(participant.identity)

        received = self.report.data_from[role]

        @room.on("data_received")
        def _on_data(packet: rtc.DataPacket) -> None:
            received.append(packet.participant.identity if packet.participant else "server")

        def _on_chat(reader: rtc.TextStreamReader, sender: str) -> None:
            received.append(sender)
            reader.close()

        room.register_text_stream_handler(TOPIC_CHAT, _on_chat)

        await room.connect(
            cfg.url, _token(cfg, identity, name, agent=agent), rtc.RoomOptions(auto_subscribe=False)
        )
        seen.update(room.remote_participants)
        source = rtc.AudioSource(SAMPLE_RATE, 1, queue_size_ms=200)
        track = rtc.LocalAudioTrack.create_audio_track(f"{role}-voice", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        publication = await room.local_participant.publish_track(track, options)
        logger.info("%s %s joined room %s", role, identity, cfg.room_name)
        return _Speaker(role, room, source, publication.sid, identity)

    async def play(
        self,
        speaker: _Speaker,
        clip: Clip,
        start: float,
        line: _Line | None = None,
        started: asyncio.Future[None] | None = None,
    ) -> None:
        """Push the clip as 10 ms frames at real-time pace, until the line is cut."""
        frame_bytes = SAMPLES_PER_FRAME * 2
        for index, offset in enumerate(range(0, len(clip.pcm), frame_bytes)):
            chunk = clip.pcm[offset : offset + frame_bytes].ljust(frame_bytes, b"\0")
            await self.sleep_until(start + index * FRAME_MS / 1000)
            if line is not None and line.cut.is_set():
                speaker.source.clear_queue()  # the buffered rest of the clip is not heard
                return
            frame = rtc.AudioFrame(chunk, SAMPLE_RATE, 1, SAMPLES_PER_FRAME)
            await speaker.source.capture_frame(frame)
            if started is not None and not started.done():
                started.set_result(None)

    async def legacy(
        self, agent: _Speaker, speaker: _Speaker, sid: str, text: str, final: bool
    ) -> None:
        # Interim segments, then a final one under the same id. The server forwards legacy
        # transcriptions only from AGENT participants, so the agent sends the caller's too,
        # under the caller's identity and track.
        segment = rtc.TranscriptionSegment(
            id=sid, text=text, start_time=0, end_time=0, language="en", final=final
        )
        await agent.room.local_participant.publish_transcription(
            rtc.Transcription(
                participant_identity=speaker.identity,
                track_sid=speaker.track_sid,
                segments=[segment],
            )
        )

    async def transcribe(
        self,
        agent: _Speaker,
        speaker: _Speaker,
        text: str,
        start: float,
        duration: float,
        line: _Line | None = None,
        segments: list[str] | None = None,
    ) -> None:
        """Send the transcript of one turn, word by word in step with the audio; a cut
        line's final holds the words spoken so far (at least the first)."""
        segment_id = f"SG_{uuid.uuid4().hex[:12]}"
        (self.report.segments[speaker.role] if segments is None else segments).append(segment_id)
        cut = line.cut if line is not None else None
        words = text.split()
        total = sum(len(w) + 1 for w in words)
        times, done = [], 0
        for word in words:
            done += len(word) + 1
            times.append(start + duration * done / total)
        attrs = {ATTR_SEGMENT_ID: segment_id, ATTR_TRACK_ID: speaker.track_sid}
        local = agent.room.local_participant
        if speaker.role == "agent":
            # The agent's own speech: one stream per segment carrying deltas.
            writer = await local.stream_text(
                topic=TOPIC_TRANSCRIPTION, attributes={**attrs, ATTR_FINAL: "false"}
            )
            written = 0
            try:
                for index, (word, at) in enumerate(zip(words, times, strict=True)):
                    if await self.sleep_until(at, cut) and written:
                        break
                    await writer.write(word if index == 0 else f" {word}")
                    written += 1
                    if index < len(words) - 1:
                        await self.legacy(
                            agent, speaker, segment_id, " ".join(words[: index + 1]), False
                        )
            finally:
                await writer.aclose(attributes={ATTR_FINAL: "true"})
            await self.legacy(agent, speaker, segment_id, " ".join(words[:written]), True)
            return
        # The caller's speech, recognized by the agent: a full-text stream per update.
        for index, at in enumerate(times[:-1]):
            if index % 2:
                continue
            if await self.sleep_until(at, cut):
                break
            partial = " ".join(words[: index + 1])
            await self._user_stream(local, speaker, attrs, partial, final=False)
            await self.legacy(agent, speaker, segment_id, partial, False)
        else:
            await self.sleep_until(times[-1], cut)
        if cut is not None and cut.is_set():
            now = time.monotonic()
            text = " ".join(words[: max(1, sum(at <= now for at in times))])
        await self._user_stream(local, speaker, attrs, text, final=True)
        await self.legacy(agent, speaker, segment_id, text, True)

    async def _user_stream(
        self,
        local: rtc.LocalParticipant,
        speaker: _Speaker,
        attrs: dict[str, str],
        text: str,
        *,
        final: bool,
    ) -> None:
        writer = await local.stream_text(
            topic=TOPIC_TRANSCRIPTION,
            attributes={**attrs, ATTR_FINAL: "true" if final else "false"},
            sender_identity=speaker.identity,
        )
        await writer.write(text)
        await writer.aclose()

    async def speak(
        self,
        speaker: _Speaker,
        text: str,
        clip: Clip,
        *,
        started: asyncio.Future[None] | None = None,
        segments: list[str] | None = None,
    ) -> None:
        """One line, its audio and its transcript, until it ends or is cut (a ``say``, a
        ``pause``)."""
        assert self.agent is not None
        line = _Line(speaker.role)
        self.lines.add(line)
        try:
            start = time.monotonic() + 0.05
            audio = asyncio.create_task(self.play(speaker, clip, start, line, started))
            try:
                await self.transcribe(
                    self.agent, speaker, text, start, clip.duration, line, segments
                )
                await audio
            finally:
                audio.cancel()
        finally:
            self.lines.discard(line)
            line.done.set()

    # --- supervisors' guidance (anyreach_listen.assist.signing) --------------------------

    async def on_guidance(self, call: rtc.RpcInvocationData) -> str:
        """The agent's RPC method: verify, act, answer once in effect (a say heard, a
        pause silent)."""
        assert self.agent is not None
        cfg = self.config
        received = signing.receive(
            call.payload,
            room=cfg.room_name,
            identity=self.agent.room.local_participant.identity,
            api_secret=cfg.api_secret,
            api_key=cfg.api_key,
            seen=self.applied,
        )
        order = received.order
        if order is None:
            logger.warning("guidance from %r refused", call.caller_identity)
            return self._noted(received.answer)
        if not received.apply:  # the server retried: answer again, act once
            return received.answer
        if order.mode == "whisper":
            self.whispered = True
            return self._noted(received.answer, order.mode)
        if order.mode == "pause":
            return await self.pause(order, received.answer)
        if order.mode == "resume":
            return self.resume(order, received.answer)
        return await self.obey_say(order, received.answer)

    async def obey_say(self, order: signing.GuidanceOrder, answer: str) -> str:
        """Speak the order's text now; answered once its first frame is sent."""
        if self.paused:  # the caller is speaking with a person
            return self._failed(order, TAKEN_OVER)
        if not order.text.split():
            return self._failed(order, "nothing to say")
        started = asyncio.get_running_loop().create_future()
        task = self.in_background(self.say(order.text, started))
        await asyncio.wait({started, task}, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            failed = None if task.cancelled() else task.exception()
            reason = "the call ended" if failed is None or isinstance(failed, Stopped) else failed
            started.cancel()
            return self._failed(order, f"not spoken: {reason}")
        return self._noted(answer, order.mode)

    async def pause(self, order: signing.GuidanceOrder, answer: str) -> str:
        """Taken over: the agent's line is cut now, answered once its audio has stopped;
        its turns are skipped until resumed, the caller's go on (and are transcribed)."""
        if self.paused:  # another pause while paused: in effect already
            return self._noted(answer, order.mode)
        self.paused = True
        self.handed_back.clear()
        cut = [line for line in self.lines if line.role == "agent"]
        for line in cut:
            line.cut.set()
        try:
            async with asyncio.timeout(CUT_WAIT):
                for line in cut:
                    await line.done.wait()
        except TimeoutError:  # not silent: not paused, and no resume will come
            self.paused = False
            self.handed_back.set()
            return self._failed(order, "the agent's line did not stop")
        return self._noted(answer, order.mode)

    def resume(self, order: signing.GuidanceOrder, answer: str) -> str:
        """Handed back: answered at once, the pickup line spoken right after (over the
        caller's line if one is in progress), then the script goes on."""
        if self.paused:  # else never paused, or resumed already: nothing to undo
            assert self.agent is not None
            self.paused = False
            self.handed_back.set()
            pickup = self.speak(
                self.agent, PICKUP_LINE, self.pickup, segments=self.report.picked_up
            )
            self.in_background(pickup)
        return self._noted(answer, order.mode)

    async def skip(self, turn: Turn) -> None:
        """A turn of the agent's while taken over: silence as long as the line (the
        supervisor's to fill), ended early by the hand-back."""
        self.report.skipped += 1
        await self.sleep_until(time.monotonic() + self.clips[turn].duration, self.handed_back)

    def in_background(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """An agent line spoken beside the script, which waits for it before its next turn."""
        task = asyncio.create_task(coro)
        self.says.add(task)
        task.add_done_callback(self.says.discard)
        return task

    def _failed(self, order: signing.GuidanceOrder, reason: str) -> str:
        """An order verified but not carried out: a retry may try again."""
        self.applied.discard(order.id)
        return self._noted(signing.acknowledgement(order.id, reason), order.mode)

    def _noted(self, answer: str, mode: str = "") -> str:
        """``answer`` (an acknowledgement), also kept in the report with the order's mode."""
        entry = {**json.loads(answer), "mode": mode}
        self.report.guidance.append(entry)
        logger.info(
            "guidance %s (%s): %s", entry["id"] or "-", mode or "-", entry.get("reason", "applied")
        )
        return answer

    async def say(self, text: str, started: asyncio.Future[None]) -> None:
        """Cut whatever is being said and speak ``text`` as the agent, right away."""
        assert self.agent is not None
        loop = asyncio.get_running_loop()
        clip = await loop.run_in_executor(
            None, synthesize, text, VOICES["agent"], self.config.cache_dir
        )
        if self.paused:  # taken over while it was synthesized
            raise RuntimeError(TAKEN_OVER)
        cut = list(self.lines)
        for line in cut:
            line.cut.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CUT_WAIT):
                for line in cut:
                    await line.done.wait()
        if self.paused:
            raise RuntimeError(TAKEN_OVER)
        await self.speak(self.agent, text, clip, started=started, segments=self.report.said)

    async def finish_says(self) -> None:
        """The script waits while the agent says what it was told to (or picks up)."""
        while self.says:
            done, _ = await asyncio.wait(set(self.says))
            for task in done:
                if not task.cancelled() and isinstance(task.exception(), Stopped):
                    raise Stopped

    def acknowledged(self, clip: Clip) -> Clip:
        pause = b"\0" * (SAMPLE_RATE // 4 * 2)  # a quarter second
        return Clip(self.acknowledgement.pcm + pause + clip.pcm)

    def turns(self) -> Iterator[Turn]:
        if self.config.loop or self.config.duration is not None:
            return itertools.cycle(self.config.script)
        return iter(self.config.script)

    async def run(self) -> CallReport:
        cfg = self.config
        loop = asyncio.get_running_loop()
        for turn in cfg.script:  # synthesize up front (cached after the first run)
            if turn not in self.clips:
                self.clips[turn] = await loop.run_in_executor(
                    None, synthesize, turn.text, VOICES[turn.role], cfg.cache_dir
                )
        self.acknowledgement = await loop.run_in_executor(
            None, synthesize, WHISPER_ACKNOWLEDGEMENT, VOICES["agent"], cfg.cache_dir
        )
        self.pickup = await loop.run_in_executor(
            None, synthesize, PICKUP_LINE, VOICES["agent"], cfg.cache_dir
        )
        agent = self.agent = await self.join("agent")
        agent.room.local_participant.register_rpc_method(signing.GUIDANCE_METHOD, self.on_guidance)
        caller: _Speaker | None = None
        try:
            caller = await self.join("user")
            speakers = {"agent": agent, "user": caller}
            began = time.monotonic()
            for turn in self.turns():
                await self.finish_says()
                if (
                    not cfg.loop
                    and cfg.duration is not None
                    and time.monotonic() - began >= cfg.duration
                ):
                    break
                if turn.role == "agent" and self.paused:
                    await self.skip(turn)
                    continue
                text, clip = turn.text, self.clips[turn]
                if turn.role == "agent" and self.whispered:
                    self.whispered = False
                    text, clip = f"{WHISPER_ACKNOWLEDGEMENT} {text}", self.acknowledged(clip)
                await self.speak(speakers[turn.role], text, clip)
                self.report.turns += 1
                await self.sleep_until(time.monotonic() + PAUSE_BETWEEN_TURNS)
            await self.finish_says()  # told during the last line: still said before hanging up
        except Stopped:
            logger.info("call in room %s stopped", cfg.room_name)
        finally:
            for task in list(self.says):
                task.cancel()
            await asyncio.gather(*self.says, return_exceptions=True)
            # The agent hangs up first, then the caller's line drops and the room closes.
            await agent.room.disconnect()
            logger.info("agent left room %s", cfg.room_name)
            if caller is not None:
                await caller.room.disconnect()
            if cfg.delete_room:
                async with livekit_api(cfg.api_url, cfg.api_key, cfg.api_secret) as client:
                    await delete_room(cfg.room_name, client)
                logger.info("room %s deleted", cfg.room_name)
        return self.report


async def run_call(config: CallConfig, stop: asyncio.Event | None = None) -> CallReport:
    """Run the call until the script (or ``duration``) ends or ``stop`` is set."""
    return await _Call(config, stop or asyncio.Event()).run()


def new_room_name() -> str:
    return f"call-{uuid.uuid4().hex[:12]}"
