"""What a recorder worker and the portal's intake say to each other, declared once.

The worker (``writer``) posts segment updates, the server (``intake``) checks and
records them; both import this module for the shapes, limits and signing. No Django
here (a worker has no database): callers pass the LiveKit key and secret in.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterable
from typing import Annotated, Any, Final, Protocol

import jwt
from livekit.api import AccessToken, TokenVerifier
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, WithJsonSchema

DELIVERY_PATH = "/livekit/recorder"  # under the portal URL, next to /livekit/webhook
RECORDER_IDENTITY = "anyreach-recorder"  # the token's subject: a recorder's delivery
DELIVERY_KIND: Final = "agent"
TOKEN_TTL = 60  # seconds a delivery's token is valid
LEEWAY = 10  # seconds of clock skew tolerated between a recorder's machine and ours

MAX_LABEL = 200  # a segment id (and the API's labels)
MAX_SEGMENT_TEXT = 10_000
MAX_SEGMENTS = 200  # per push or delivery
MAX_ROOM_NAME = 256
SPEAKER_ROLES = ("agent", "user")


def storable(text: str) -> bool:
    """Whether every supported database stores ``text`` as it is.

    PostgreSQL refuses NUL in text and jsonb; a lone surrogate is not UTF-8.
    """
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class NotStorable(ValueError):
    """A string no supported database stores as it is (NUL, a lone surrogate)."""


def _stored(text: str) -> str:
    if not storable(text):
        raise NotStorable("must not contain NUL characters")
    return text


def _speaker(role: str) -> str:
    if role not in SPEAKER_ROLES:
        raise ValueError("must be agent or user")
    return role


class Segment(Protocol):
    """Anything that reads as a segment update (``SegmentIn`` and its look-alikes)."""

    @property
    def id(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def final(self) -> bool: ...


@dataclasses.dataclass(frozen=True)
class SegmentIn:
    """One update of a segment: its whole text so far. Its fields are the JSON of a
    segment pushed to the API or delivered by a recorder."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    # Strict: exact JSON types (``final`` is a boolean, never 1 or "true").
    id: Annotated[str, Strict(), Field(min_length=1, max_length=MAX_LABEL), AfterValidator(_stored)]
    role: Annotated[
        str,
        Strict(),
        AfterValidator(_speaker),
        WithJsonSchema({"type": "string", "enum": list(SPEAKER_ROLES)}),
    ]
    text: Annotated[
        str,
        Strict(),
        Field(max_length=MAX_SEGMENT_TEXT, description="The whole segment so far, not a delta."),
        AfterValidator(_stored),
    ]
    final: Annotated[bool, Strict()]


SEGMENT_FIELDS = tuple(f.name for f in dataclasses.fields(SegmentIn))


def segment_json(update: Segment) -> dict[str, Any]:
    return {name: getattr(update, name) for name in SEGMENT_FIELDS}


class TranscriptPush(BaseModel):
    """The body of a transcript push (``POST /core/conversations/{id}/transcript``)."""

    model_config = ConfigDict(extra="forbid")

    segments: Annotated[list[SegmentIn], Field(max_length=MAX_SEGMENTS)]


class RecorderDelivery(TranscriptPush):
    """The body of a recorder's delivery: a push for the room's call (the dispatch's
    conversation when it names one)."""

    room: Annotated[str, Field(min_length=1, max_length=MAX_ROOM_NAME)]
    conversation_id: uuid.UUID | None = None


class WorkerRegistered(BaseModel):
    """``{"registered": <worker id>}``: a worker registered with LiveKit."""

    model_config = ConfigDict(extra="forbid")

    registered: str


class DeliveryResult(BaseModel):
    """The intake's answer to a delivery (a push answers with its alerts too)."""

    recorded: int
    unchanged: int


DELIVERY_FIELDS = frozenset(RecorderDelivery.model_fields)
REGISTERED = next(iter(WorkerRegistered.model_fields))


def _dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def delivery_body(room: str, segments: Iterable[Segment], conversation_id: str | None) -> bytes:
    data: dict[str, Any] = {"room": room, "segments": [segment_json(u) for u in segments]}
    if conversation_id:
        data["conversation_id"] = conversation_id
    return _dumps(data)


def registered_body(worker_id: str) -> bytes:
    return _dumps({REGISTERED: worker_id})


# --- signing: a LiveKit-style JWT over the body's hash, with the shared secret -----------


def body_hash(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def sign(body: bytes, api_key: str, api_secret: str, *, ttl: int = TOKEN_TTL) -> str:
    """The ``Authorization`` header value of a delivery of ``body`` (the worker's half)."""
    token = (
        AccessToken(api_key, api_secret)
        .with_identity(RECORDER_IDENTITY)
        .with_kind(DELIVERY_KIND)
        .with_sha256(body_hash(body))
        .with_ttl(dt.timedelta(seconds=ttl))
        .to_jwt()
    )
    return f"Bearer {token}"


def refusal(authorization: str, body: bytes, api_key: str, api_secret: str) -> str | None:
    """Why a delivery of ``body`` with this ``Authorization`` is refused (for the log,
    never the token), or None when it is a recorder's, signed for this body (the
    server's half)."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return "no bearer token"
    token = token.strip()
    verifier = TokenVerifier(api_key, api_secret, leeway=dt.timedelta(seconds=LEEWAY))
    try:
        claims = verifier.verify(token)  # signature, issuer, exp (required)
        # Already verified; read the raw claims the Claims object does not keep.
        raw: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except Exception as exc:
        return type(exc).__name__
    if claims.identity != RECORDER_IDENTITY or claims.kind != DELIVERY_KIND or "video" in raw:
        return "not a recorder delivery token"
    if not isinstance(raw.get("exp"), int) or raw["exp"] > time.time() + TOKEN_TTL + LEEWAY:
        return "token lifetime too long"  # a short-lived token only
    if not claims.sha256 or not hmac.compare_digest(claims.sha256, body_hash(body)):
        return "body hash mismatch"
    return None
