"""Supervisors' guidance and takeovers applied inside a livekit-agents session.

``enable_guidance`` registers ``GUIDANCE_METHOD`` on the agent's participant; every call
goes through ``signing.receive`` (signed by our server for this room, this agent and API
key, recent) before anything happens; a refusal is answered with its reason and changes
nothing. ``say`` and ``whisper`` guide the agent; ``pause`` silences it while a supervisor
speaks with the caller (its STT still transcribes them); ``resume`` gives it the call
back with what was said meanwhile. Imports no Django.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from livekit import rtc
from livekit.agents import AgentSession
from livekit.agents.utils import is_given

from anyreach_listen.assist import signing

if TYPE_CHECKING:
    from livekit.agents.voice.turn import TurnDetectionMode

logger = logging.getLogger(__name__)

# How a whisper reads in the agent's context: the model must know who wrote it and that
# the caller did not hear it.
WHISPER_PREFIX = (
    "Private guidance from a human supervisor listening to this call. The caller did not "
    "hear it; follow it in your next replies without quoting it: "
)
# Before a resume's text (the server's account of the takeover and the lines transcribed
# meanwhile) in the agent's context: the model must know it heard none of it itself.
TAKEOVER_PREFIX = (
    "A human supervisor spoke with the caller while you were paused. The call's record "
    "of that time:\n"
)
PICKUP_INSTRUCTIONS = (
    "The supervisor has handed the call back to you. Pick the conversation up in one short "
    "sentence: tell the caller you are back with them and carry on from what was said "
    "while the supervisor spoke with them, without repeating it."
)
PAUSE_SETTLE = 2.0  # seconds a pause waits for the interrupted speech to stop before answering
_REMEMBERED = 256  # order ids kept to answer a retried order without acting twice


class TakenOver(Exception):
    """An order the agent will not carry out while a supervisor has the call."""


class Takeover:
    """A session's takeover: whether the agent is paused, and what the pause changed, to
    restore it on resume. Orders are applied one at a time."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.paused = False
        self.turn_detection: TurnDetectionMode | None = None
        self.audio_enabled = True
        self.transcription_enabled = True


def enable_guidance(
    session: AgentSession,
    room: rtc.Room,
    *,
    api_secret: str | None = None,
    api_key: str | None = None,
) -> None:
    """Let supervisors guide ``session``'s agent in ``room`` and take its calls over (call
    once, after ``session.start``). ``api_secret`` defaults to ``LIVEKIT_API_SECRET`` and
    ``api_key`` to ``LIVEKIT_API_KEY``, which a livekit-agents worker already has: an order
    must be signed with that secret and name that key as its issuer. With no API key either
    way, the issuer is not checked (the signature, room, agent and age still are)."""
    secret = api_secret if api_secret is not None else os.environ.get("LIVEKIT_API_SECRET", "")
    if not secret:
        raise ValueError("enable_guidance needs the LiveKit API secret (LIVEKIT_API_SECRET)")
    key = api_key if api_key is not None else os.environ.get("LIVEKIT_API_KEY") or None
    applied = signing.RecentIds(_REMEMBERED)
    takeover = Takeover()

    async def handle(call: rtc.RpcInvocationData) -> str:
        received = signing.receive(
            call.payload,
            room=room.name,
            identity=room.local_participant.identity,
            api_secret=secret,
            api_key=key,
            seen=applied,
        )
        order = received.order
        if order is None:
            logger.warning("guidance from %r refused: %s", call.caller_identity, received.answer)
        elif received.apply:
            try:
                await apply(session, order, takeover)
            except TakenOver as refused:
                applied.discard(order.id)
                return signing.acknowledgement(order.id, str(refused))
            except Exception as exc:  # the session is closing, or will not be interrupted
                logger.exception("guidance %s not applied", order.id)
                applied.discard(order.id)  # a retry tries again
                return signing.acknowledgement(order.id, f"not applied: {exc}")
        return received.answer

    room.local_participant.register_rpc_method(signing.GUIDANCE_METHOD, handle)


def _interrupted(done: asyncio.Future[None]) -> None:
    """The interruption's outcome, retrieved: a failure is logged, never left unread."""
    if not done.cancelled() and (failure := done.exception()) is not None:
        logger.warning("interrupting the agent failed: %r", failure)


async def apply(session: AgentSession, order: signing.GuidanceOrder, takeover: Takeover) -> None:
    """Act on a verified order; returns once it is in effect (a ``say`` scheduled, not
    spoken; a pause silent; a resume's reply scheduled)."""
    async with takeover.lock:
        if order.mode == "pause":
            await _pause(session, takeover)
        elif order.mode == "resume":
            await _resume(session, order, takeover)
        elif order.mode == "say":
            if takeover.paused:  # the caller is speaking with a person
                raise TakenOver("taken over: the agent is paused until the call is handed back")
            # A supervisor's order outranks a line marked uninterruptible. The future
            # resolves when the interrupted speech has stopped; the new one is queued
            # behind it anyway, so the answer does not wait for it.
            session.interrupt(force=True).add_done_callback(_interrupted)
            session.say(order.text)
        else:
            await _add_system_message(session, WHISPER_PREFIX + order.text, f"guidance_{order.id}")


async def _pause(session: AgentSession, takeover: Takeover) -> None:
    """Silence the agent and stop its replies; its STT keeps transcribing the caller (with
    manual turn detection nothing is committed, so nothing is answered). Outputs off: a
    reply generated anyway (your code, a chat message) is neither heard nor published."""
    if takeover.paused:  # a second pause: already in effect
        return
    stopping = session.interrupt(force=True)
    stopping.add_done_callback(_interrupted)
    takeover.turn_detection = session.turn_detection
    session.update_options(turn_detection="manual")
    takeover.paused = True
    # Outputs off once the interrupted speech has stopped (detached sooner, the transcript
    # synchronizer would record it as said whole); answered then: the supervisor speaks next.
    await asyncio.wait({stopping}, timeout=PAUSE_SETTLE)
    output = session.output
    takeover.audio_enabled = output.audio_enabled
    takeover.transcription_enabled = output.transcription_enabled
    output.set_audio_enabled(False)
    output.set_transcription_enabled(False)


async def _resume(session: AgentSession, order: signing.GuidanceOrder, takeover: Takeover) -> None:
    """Give the agent the call back: what was said meanwhile joins its context (first: a
    failure there leaves it paused for a retry), its turns and outputs as before the pause,
    then a short reply picking the call up."""
    if not takeover.paused:  # never paused, or resumed already: nothing to undo
        return
    if order.text.strip():
        await _add_system_message(session, TAKEOVER_PREFIX + order.text, f"takeover_{order.id}")
    # The caller's words during the takeover are in the text: not a user turn to answer.
    session.clear_user_turn()
    session.update_options(turn_detection=takeover.turn_detection)
    agent = session.current_agent
    if is_given(own := agent.turn_detection):  # the agent's own mode, which the pause and
        agent.turn_detection = own  # the session's restored mode overrode: applied again
    output = session.output
    if output.audio_enabled != takeover.audio_enabled:
        output.set_audio_enabled(takeover.audio_enabled)
    if output.transcription_enabled != takeover.transcription_enabled:
        output.set_transcription_enabled(takeover.transcription_enabled)
    takeover.paused = False
    session.generate_reply(instructions=PICKUP_INSTRUCTIONS)


async def _add_system_message(session: AgentSession, text: str, message_id: str) -> None:
    """``text`` as a system message in the current agent's context, once per id."""
    agent = session.current_agent
    chat_ctx = agent.chat_ctx.copy()
    if chat_ctx.get_by_id(message_id) is not None:  # a retried resume added it already
        return
    chat_ctx.add_message(role="system", content=text, id=message_id)
    await agent.update_chat_ctx(chat_ctx)
