"""The signed order a supervisor's guidance travels in, shared by the server and the agent.

Any participant with data permission may call the agent's RPC methods and LiveKit blanks a
hidden caller's identity: only a signature proves our server sent an order. A JWT (HS256,
a key derived from the LiveKit API secret, at most ``MAX_TTL`` s) binds the room, the id,
the agent (``aud``), the API key (``iss``) and the text's SHA-256; the text travels beside
it. ``receive`` is the agent's whole path: verify, refuse naming the id, act once. A
takeover (``assist/takeover.py``) travels the same way: ``pause``, then ``resume`` with the
lines said meanwhile as its text. No Django.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Iterator, MutableSet
from dataclasses import dataclass
from typing import Any, Literal

import jwt

GUIDANCE_METHOD = "anyreach.guidance"  # the RPC method the agent registers
GUIDANCE_MODES = ("whisper", "say")  # a supervisor's guidance: text of 1 to MAX_TEXT
TAKEOVER_MODES = ("pause", "resume")  # a takeover: no text, then the lines said meanwhile
MODES = GUIDANCE_MODES + TAKEOVER_MODES
MAX_TEXT = 1000
MAX_CONTEXT_BYTES = 12_000  # UTF-8 of a resume's lines: with the token, under MAX_PAYLOAD
MAX_TTL = 60  # seconds an order stays valid
MAX_PAYLOAD = 15_360  # bytes of a PerformRpc payload LiveKit takes (more: RpcError 1402)
_SUBJECT = "anyreach-guidance"
_KEY_LABEL = b"anyreach-guidance"  # what the signing key is derived for
_LEEWAY = 5  # seconds of clock skew between the server and the agent's machine
_REQUIRED = ["exp", "iat", "sub", "room", "gid", "mode", "sha256"]
_ECHOED_ID = 100  # the longest unverified id a refusal names

Mode = Literal["whisper", "say", "pause", "resume"]


class GuidanceRefused(Exception):
    """An order the agent must not act on; ``str()`` is the reason it answers with."""


@dataclass(frozen=True)
class GuidanceOrder:
    id: str
    mode: Mode
    text: str


def signing_key(api_secret: str) -> bytes:
    """The key orders are signed with, derived from the LiveKit API secret: LiveKit's
    access tokens are signed with the secret itself, so neither passes for the other."""
    return hmac.new(api_secret.encode(), _KEY_LABEL, hashlib.sha256).digest()


def text_digest(text: str) -> str:
    """The ``sha256`` claim: the hex SHA-256 of the text's UTF-8."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def sign(
    order: GuidanceOrder,
    *,
    room: str,
    api_key: str,
    api_secret: str,
    ttl: int = 30,
    identity: str | None = None,
) -> str:
    """The RPC payload of ``order`` for the agent ``identity`` in ``room``: the token and,
    beside it, the text (as UTF-8: 1,000 emoji stay far below ``MAX_PAYLOAD``). Without
    ``identity`` the token has no ``aud``, and an agent that checks its own refuses it."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": api_key,
        "sub": _SUBJECT,
        "room": room,
        "gid": order.id,
        "mode": order.mode,
        "sha256": text_digest(order.text),
        "iat": now,
        "exp": now + min(ttl, MAX_TTL),
    }
    if identity is not None:
        claims["aud"] = identity
    token = jwt.encode(claims, signing_key(api_secret), algorithm="HS256")
    return json.dumps({"token": token, "text": order.text}, ensure_ascii=False)


def verify(
    payload: str,
    *,
    room: str,
    api_secret: str,
    api_key: str | None = None,
    identity: str | None = None,
) -> GuidanceOrder:
    """The order in an RPC ``payload``, if our server signed it, with the text beside it,
    for ``room`` within the last ``MAX_TTL`` seconds; ``GuidanceRefused`` otherwise.

    ``api_key``: the issuer the order must name (None: not checked, for an agent that
    knows no API key; the signature still is). ``identity``: the agent's own, which the
    order must be addressed to (``aud``; None: not checked).
    """
    try:
        data = json.loads(payload)
        token, text = data["token"], data["text"]
        claims = jwt.decode(
            token,
            signing_key(api_secret),
            algorithms=["HS256"],
            options={"require": _REQUIRED, "verify_aud": False},  # aud: checked below
            leeway=_LEEWAY,
        )
    except (ValueError, KeyError, TypeError, jwt.PyJWTError) as exc:
        raise GuidanceRefused(f"invalid signature: {exc}") from None
    if claims["sub"] != _SUBJECT:
        raise GuidanceRefused("not a guidance order")
    if api_key is not None and claims.get("iss") != api_key:
        raise GuidanceRefused("signed for another API key")
    if identity is not None and claims.get("aud") != identity:
        raise GuidanceRefused("addressed to another participant")
    if claims["room"] != room:
        raise GuidanceRefused("signed for another room")
    if claims["exp"] - claims["iat"] > MAX_TTL:
        raise GuidanceRefused("valid for too long")
    if not isinstance(text, str) or not hmac.compare_digest(
        str(claims["sha256"]), text_digest(text)
    ):
        raise GuidanceRefused("the text is not the one signed")
    mode = claims["mode"]
    if mode not in MODES or not text_fits(mode, text):
        raise GuidanceRefused("malformed order")
    return GuidanceOrder(id=str(claims["gid"]), mode=mode, text=text)


def text_fits(mode: str, text: str) -> bool:
    """Whether ``text`` is what an order of ``mode`` carries: guidance 1 to ``MAX_TEXT``
    characters, a pause none, a resume at most ``MAX_CONTEXT_BYTES`` of UTF-8."""
    if mode == "pause":
        return text == ""
    if mode == "resume":
        return len(text.encode("utf-8", "surrogatepass")) <= MAX_CONTEXT_BYTES
    return 1 <= len(text) <= MAX_TEXT


def unverified_id(payload: str) -> str:
    """The guidance id a payload claims, read without verifying anything: only for a
    refusal to name, so the server records why; "" when none can be read."""
    try:
        gid = jwt.decode(json.loads(payload)["token"], options={"verify_signature": False})["gid"]
    except (ValueError, KeyError, TypeError, jwt.PyJWTError):
        return ""
    return gid if isinstance(gid, str) and len(gid) <= _ECHOED_ID else ""


def acknowledgement(order_id: str, refusal: str | None = None) -> str:
    """The agent's answer: applied, or refused with a reason."""
    if refusal is None:
        return json.dumps({"id": order_id, "status": "applied"})
    return json.dumps({"id": order_id, "status": "refused", "reason": refusal[:200]})


def read_acknowledgement(answer: str, order_id: str) -> str | None:
    """None when the agent applied ``order_id``; else why not. A refusal counts with the
    order's id or none (an agent that could not read the id), so its reason is kept."""
    try:
        data = json.loads(answer)
    except ValueError:
        return "unreadable acknowledgement"
    if not isinstance(data, dict):
        return "unreadable acknowledgement"
    refused = data.get("status") == "refused"
    if data.get("id") != order_id and not (refused and data.get("id") == ""):
        return "acknowledgement of another order"
    if data.get("status") == "applied":
        return None
    return str(data.get("reason") or "refused")


class RecentIds(MutableSet[str]):
    """The ids of the orders applied lately, the oldest forgotten past ``size``: what
    ``receive`` answers a retried order from."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, value: object) -> bool:
        return value in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, value: str) -> None:
        self._ids[value] = None
        self._ids.move_to_end(value)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)

    def discard(self, value: str) -> None:
        self._ids.pop(value, None)


@dataclass(frozen=True)
class Received:
    """An RPC call as the agent judged it. ``order``: the verified order (None: refused);
    ``apply``: act on it before answering (False: refused, or a retry of an order applied
    already); ``answer``: what to return once done (applied, or the refusal's reason)."""

    order: GuidanceOrder | None
    answer: str
    apply: bool


def receive(
    payload: str,
    *,
    room: str,
    identity: str | None,
    api_secret: str,
    api_key: str | None = None,
    seen: MutableSet[str],
) -> Received:
    """What the agent named ``identity`` in ``room`` does with an RPC ``payload`` (both
    agents: ``agent/guidance.py``, the demo's): refuse it, naming the id it claims
    (read unverified), answer a retry of an id in ``seen`` without acting, or apply it.

    An order to apply joins ``seen`` at once, so a retry meanwhile is not applied twice; a
    caller that fails to apply it discards its id and answers ``acknowledgement(id, why)``.
    """
    try:
        order = verify(
            payload, room=room, api_secret=api_secret, api_key=api_key, identity=identity
        )
    except GuidanceRefused as refused:
        return Received(None, acknowledgement(unverified_id(payload), str(refused)), False)
    answer = acknowledgement(order.id)
    if order.id in seen:
        return Received(order, answer, False)
    seen.add(order.id)
    return Received(order, answer, True)
