"""Supervisors' guidance applied inside a livekit-agents session.

``enable_guidance`` registers ``GUIDANCE_METHOD`` on the agent's participant. Every call
is verified (signed by our server with the LiveKit API secret, for this room, recent)
before anything happens; a refusal is answered with its reason and changes nothing.
``say`` interrupts the agent and makes it say the text next; ``whisper`` adds a system
message to the agent's context for its following replies. Imports no Django.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict

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
    session: AgentSession, room: rtc.Room, *, api_secret: str | None = None
) -> None:
    """Let supervisors guide ``session``'s agent in ``room`` (call once, after
    ``session.start``). ``api_secret`` defaults to ``LIVEKIT_API_SECRET``, which a
    livekit-agents worker already has."""
    secret = api_secret if api_secret is not None else os.environ.get("LIVEKIT_API_SECRET", "")
    if not secret:
        raise ValueError("enable_guidance needs the LiveKit API secret (LIVEKIT_API_SECRET)")
    applied: OrderedDict[str, None] = OrderedDict()

    async def handle(call: rtc.RpcInvocationData) -> str:
        try:
            order = signing.verify(call.payload, room=room.name, api_secret=secret)
        except signing.GuidanceRefused as refused:
            logger.warning("guidance from %r refused: %s", call.caller_identity, refused)
            return signing.acknowledgement("", str(refused))
        if order.id in applied:  # the server retried: answer again, act once
            return signing.acknowledgement(order.id)
        try:
            await apply(session, order)
        except Exception as exc:  # the session is closing, or will not be interrupted
            logger.exception("guidance %s not applied", order.id)
            return signing.acknowledgement(order.id, f"not applied: {exc}")
        applied[order.id] = None
        while len(applied) > _REMEMBERED:
            applied.popitem(last=False)
        return signing.acknowledgement(order.id)

    room.local_participant.register_rpc_method(signing.GUIDANCE_METHOD, handle)


async def apply(session: AgentSession, order: signing.GuidanceOrder) -> None:
    """Act on a verified order; returns once it is in effect (a ``say`` scheduled, not
    spoken)."""
    if order.mode == "say":
        # A supervisor's order outranks a line marked uninterruptible. The future resolves
        # when the interrupted speech has stopped; the new one is queued behind it anyway.
        session.interrupt(force=True)
        session.say(order.text)
        return
    agent = session.current_agent
    chat_ctx = agent.chat_ctx.copy()
    chat_ctx.add_message(
        role="system", content=WHISPER_PREFIX + order.text, id=f"guidance_{order.id}"
    )
    await agent.update_chat_ctx(chat_ctx)
