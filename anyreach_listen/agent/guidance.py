"""Supervisors' guidance applied inside a livekit-agents session.

``enable_guidance`` registers ``GUIDANCE_METHOD`` on the agent's participant; every call
goes through ``signing.receive`` (signed by our server for this room, this agent and API
key, recent) before anything happens; a refusal is answered with its reason and changes
nothing. ``say`` interrupts the agent and makes it say the text next; ``whisper`` adds a
system message to the agent's context for its following replies. Imports no Django.
"""

from __future__ import annotations

import asyncio
import logging
import os

from livekit import rtc
from livekit.agents import AgentSession

from anyreach_listen.assist import signing

logger = logging.getLogger(__name__)

# How a whisper reads in the agent's context: the model must know who wrote it and that
# the caller did not hear it.
WHISPER_PREFIX = (
    "Private guidance from a human supervisor listening to this call. The caller did not "
    "hear it; follow it in your next replies without quoting it: "
)
_REMEMBERED = 256  # order ids kept to answer a retried order without acting twice


def enable_guidance(
    session: AgentSession,
    room: rtc.Room,
    *,
    api_secret: str | None = None,
    api_key: str | None = None,
) -> None:
    """Let supervisors guide ``session``'s agent in ``room`` (call once, after
    ``session.start``). ``api_secret`` defaults to ``LIVEKIT_API_SECRET`` and ``api_key``
    to ``LIVEKIT_API_KEY``, which a livekit-agents worker already has: an order must be
    signed with that secret and name that key as its issuer. With no API key either way,
    the issuer is not checked (the signature, room, agent and age still are)."""
    secret = api_secret if api_secret is not None else os.environ.get("LIVEKIT_API_SECRET", "")
    if not secret:
        raise ValueError("enable_guidance needs the LiveKit API secret (LIVEKIT_API_SECRET)")
    key = api_key if api_key is not None else os.environ.get("LIVEKIT_API_KEY") or None
    applied = signing.RecentIds(_REMEMBERED)

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
                await apply(session, order)
            except Exception as exc:  # the session is closing, or will not be interrupted
                logger.exception("guidance %s not applied", order.id)
                applied.discard(order.id)  # a retry tries again
                return signing.acknowledgement(order.id, f"not applied: {exc}")
        return received.answer

    room.local_participant.register_rpc_method(signing.GUIDANCE_METHOD, handle)


def _interrupted(done: asyncio.Future[None]) -> None:
    """The interruption's outcome, retrieved: a failure is logged, never left unread."""
    if not done.cancelled() and (failure := done.exception()) is not None:
        logger.warning("interrupting the agent for a say failed: %r", failure)


async def apply(session: AgentSession, order: signing.GuidanceOrder) -> None:
    """Act on a verified order; returns once it is in effect (a ``say`` scheduled, not
    spoken)."""
    if order.mode == "say":
        # A supervisor's order outranks a line marked uninterruptible. The future resolves
        # when the interrupted speech has stopped; the new one is queued behind it anyway,
        # so the answer does not wait for it.
        session.interrupt(force=True).add_done_callback(_interrupted)
        session.say(order.text)
        return
    agent = session.current_agent
    chat_ctx = agent.chat_ctx.copy()
    chat_ctx.add_message(
        role="system", content=WHISPER_PREFIX + order.text, id=f"guidance_{order.id}"
    )
    await agent.update_chat_ctx(chat_ctx)
