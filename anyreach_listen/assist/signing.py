"""The signed order a supervisor's guidance travels in, shared by the server and the agent.

Any participant with data permission may call an RPC method on the agent, and LiveKit
blanks a hidden caller's identity: only a signature proves our server sent an order.
The server signs with the LiveKit API secret (HS256, at most ``MAX_TTL`` seconds, bound
to the room and the guidance id); the agent verifies before it acts. Pure: no Django.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Literal

import jwt

GUIDANCE_METHOD = "anyreach.guidance"  # the RPC method the agent registers
MODES = ("whisper", "say")
MAX_TEXT = 1000
MAX_TTL = 60  # seconds an order stays valid
_SUBJECT = "anyreach-guidance"
_LEEWAY = 5  # seconds of clock skew between the server and the agent's machine

Mode = Literal["whisper", "say"]


class GuidanceRefused(Exception):
    """An order the agent must not act on; ``str()`` is the reason it answers with."""


@dataclass(frozen=True)
class GuidanceOrder:
    id: str
    mode: Mode
    text: str


def sign(order: GuidanceOrder, *, room: str, api_key: str, api_secret: str, ttl: int = 30) -> str:
    """The RPC payload of ``order`` for the agent in ``room``."""
    now = int(time.time())
    claims = {
        "iss": api_key,
        "sub": _SUBJECT,
        "room": room,
        "gid": order.id,
        "mode": order.mode,
        "text": order.text,
        "iat": now,
        "exp": now + min(ttl, MAX_TTL),
    }
    return json.dumps({"token": jwt.encode(claims, api_secret, algorithm="HS256")})


def verify(payload: str, *, room: str, api_secret: str) -> GuidanceOrder:
    """The order in an RPC ``payload``, if our server signed it for ``room`` within the
    last ``MAX_TTL`` seconds; ``GuidanceRefused`` otherwise."""
    try:
        token = json.loads(payload)["token"]
        claims = jwt.decode(
            token,
            api_secret,
            algorithms=["HS256"],
            options={"require": ["exp", "iat", "sub", "room", "gid", "mode", "text"]},
            leeway=_LEEWAY,
        )
    except (ValueError, KeyError, TypeError, jwt.PyJWTError) as exc:
        raise GuidanceRefused(f"invalid signature: {exc}") from None
    if claims["sub"] != _SUBJECT:
        raise GuidanceRefused("not a guidance order")
    if claims["room"] != room:
        raise GuidanceRefused("signed for another room")
    if claims["exp"] - claims["iat"] > MAX_TTL:
        raise GuidanceRefused("valid for too long")
    mode, text = claims["mode"], claims["text"]
    if mode not in MODES or not isinstance(text, str) or not 1 <= len(text) <= MAX_TEXT:
        raise GuidanceRefused("malformed order")
    return GuidanceOrder(id=str(claims["gid"]), mode=mode, text=text)


def acknowledgement(order_id: str, refusal: str | None = None) -> str:
    """The agent's answer: applied, or refused with a reason."""
    if refusal is None:
        return json.dumps({"id": order_id, "status": "applied"})
    return json.dumps({"id": order_id, "status": "refused", "reason": refusal[:200]})


def read_acknowledgement(answer: str, order_id: str) -> str | None:
    """None when the agent applied ``order_id``; else why not."""
    try:
        data = json.loads(answer)
    except ValueError:
        return "unreadable acknowledgement"
    if not isinstance(data, dict) or data.get("id") != order_id:
        return "acknowledgement of another order"
    if data.get("status") == "applied":
        return None
    return str(data.get("reason") or "refused")
