"""The one grant path: every listen (API, portal, admin) is minted and audited here.

``grant_listen`` signs a listener token in-process, or, for portal and admin
listens when ``REMOTE_MINT`` is configured, asks the remote Anyreach-compatible
API for one; either way it opens the one ``ListenSession`` audit row
(``listening/sessions.py``). Callers authenticate and authorize first
(``access/policy.py``); this module only refuses what would make an invalid token.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from livekit.api import AccessToken, VideoGrants

from anyreach_listen import row_locks
from anyreach_listen.access.key_cache import KeyRow
from anyreach_listen.api.errors import ApiError, ErrorKind, Errors
from anyreach_listen.api.shapes import ListenerToken
from anyreach_listen.conf import listen_settings
from anyreach_listen.listening import entitlement, sessions
from anyreach_listen.listening.remote_minting import (
    listener_grant_problem,
    mint_remotely,
    refused_answer,
)
from anyreach_listen.models import ACTIVE_STATUSES, Conversation, ListenSession, ListenVia

LISTENER_IDENTITY_PREFIX = "listener-"


@dataclass(frozen=True)
class ListenerGrant:
    url: str
    token: str
    room_name: str
    expires_at: dt.datetime
    listen_session: ListenSession

    def as_response(self) -> dict[str, str]:
        """The four fields of the contract's response."""
        return ListenerToken(
            url=self.url, token=self.token, room_name=self.room_name, expires_at=self.expires_at
        ).as_json()


def ensure_listenable(conversation: Conversation) -> None:
    """The contract's state rules: 409 when not active, 404 when there is no room."""
    if not conversation.is_active:
        raise ApiError(
            Errors.CONVERSATION_NOT_ACTIVE,
            f"The conversation is {conversation.get_status_display().lower()}; "
            "only triggered, ringing or in-progress calls can be listened to.",
        )
    if not conversation.livekit_room:
        raise ApiError(Errors.ROOM_NOT_FOUND)


def listener_grants(room_name: str) -> VideoGrants:
    """Subscribe-only and hidden: the listener can hear, never speak or be seen."""
    return VideoGrants(
        room_join=True,
        room=room_name,
        can_subscribe=True,
        can_publish=False,
        can_publish_data=False,
        can_update_own_metadata=False,
        hidden=True,
    )


def _expiry(token: str) -> dt.datetime:
    """The JWT's ``exp``: ``expires_at`` must equal it exactly."""
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    return dt.datetime.fromtimestamp(int(exp), tz=dt.UTC)


def sign_listener_token(conversation: Conversation, identity: str) -> str:
    room_name = conversation.livekit_room
    if not room_name:
        raise ValueError("conversation has no LiveKit room")
    embed_origins = conversation.organization.allowed_embed_origins
    return (
        AccessToken(listen_settings.LIVEKIT_API_KEY, listen_settings.LIVEKIT_API_SECRET)
        .with_identity(identity)
        .with_name("Listener")
        .with_ttl(dt.timedelta(seconds=int(listen_settings.LISTENER_TOKEN_TTL)))
        .with_grants(listener_grants(room_name))
        # The frame reads this to refuse embedding origins the organization did not allow.
        .with_metadata(json.dumps({"listener": True, "embed_origins": embed_origins}))
        .to_jwt()
    )


def _refusal_kind(via: str, refusal: str) -> ErrorKind:
    """The error an entitlement refusal is reported as, in the caller's own terms."""
    if via != ListenVia.API:
        return Errors.LISTEN_NOT_ALLOWED
    if refusal == entitlement.CREDENTIAL_GONE:
        return Errors.CREDENTIALS_REVOKED
    return Errors.INSUFFICIENT_SCOPE


@dataclass(frozen=True)
class _Minted:
    url: str
    token: str
    room_name: str
    identity: str
    expires_at: dt.datetime
    session_id: uuid.UUID | None  # None: the remote chose the identity


def _mint_here(conversation: Conversation) -> _Minted:
    ensure_listenable(conversation)
    session_id = uuid.uuid4()
    identity = f"{LISTENER_IDENTITY_PREFIX}{session_id}"
    token = sign_listener_token(conversation, identity)
    room_name = str(conversation.livekit_room)
    url = listen_settings.LIVEKIT_URL
    return _Minted(url, token, room_name, identity, _expiry(token), session_id)


def _mint_remotely(conversation: Conversation, config: dict[str, Any]) -> _Minted:
    fields = mint_remotely(config, str(conversation.pk))
    try:
        claims = jwt.decode(fields["token"], options={"verify_signature": False})
        identity = str(claims["sub"])
        expires_at = _expiry(fields["token"])
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        raise ApiError(Errors.REMOTE_INVALID) from None
    # Unverified (the remote's LiveKit secret is not ours), but read: a token for another
    # room would be audited here as a listen to this call. The answer's room_name must
    # agree, or the page would join one room while the token grants another.
    room = conversation.livekit_room or ""
    video = claims.get("video")
    token_room = video.get("room") if isinstance(video, dict) else None
    if not room or token_room != room or fields["room_name"] != room:
        raise refused_answer(
            conversation.pk,
            f"token for room {token_room!r}, room_name {fields['room_name']!r}, "
            f"the conversation's room is {room!r}",
        )
    # And a listener's token, nothing more: the page hands its holder whatever it grants,
    # and the audit row records a listen.
    problem = listener_grant_problem(
        claims,
        identity_prefix=LISTENER_IDENTITY_PREFIX,
        ttl=int(listen_settings.LISTENER_TOKEN_TTL),
        now=dt.datetime.now(dt.UTC).timestamp(),
    )
    if problem is not None:
        raise refused_answer(conversation.pk, problem)
    return _Minted(fields["url"], fields["token"], fields["room_name"], identity, expires_at, None)


def _still_in_room(conversation: Conversation, room_name: str) -> None:
    """On the locked row: the call is still active in the room the token is for. A change
    that raced the mint (the call ended, or the platform gave its room to another
    organization) wins; otherwise the new session would sit on an ended call, which no
    revocation covers, with a token for a room that is no longer the call's."""
    rows = Conversation.objects.filter(pk=conversation.pk).order_by()
    found = row_locks.shared(rows.values_list("status", "livekit_room"), of=("self",))
    if not found:
        raise ApiError(Errors.CONVERSATION_NOT_FOUND)
    status, room = found[0]
    if status not in ACTIVE_STATUSES or room != room_name:
        raise ApiError(Errors.CONVERSATION_NOT_ACTIVE)


def grant_listen(
    conversation: Conversation,
    *,
    via: str,
    audit: dict[str, Any] | None = None,
    request: HttpRequest | None = None,
    locked: bool = False,
    kept_key: KeyRow | None = None,
) -> ListenerGrant:
    """Mint a listener token for ``conversation`` and write its one audit row.

    ``audit`` says who listens (``user``, ``api_key``, ``personal_access_token``:
    a policy's ``audit_fields``). The API is the platform itself and always mints
    here; the portal and the admin mint remotely when ``REMOTE_MINT`` is set (the
    remote then owns the call's state: its 404 and 409 pass through). ``locked``: the
    caller read ``conversation`` under its row lock in the transaction it calls this
    in (the API does), so its state is current and is not read again. ``kept_key``: the
    caller's API key came from ``key_cache`` unread; the locked re-check confirms it
    unchanged or raises ``key_cache.Stale`` (the caller's transaction then rolls back).
    """
    remote = listen_settings.REMOTE_MINT
    if remote and via != ListenVia.API:
        minted = _mint_remotely(conversation, remote)
    else:
        minted = _mint_here(conversation)
    row: dict[str, Any] = {
        "identity": minted.identity,
        "via": via,
        "expires_at": minted.expires_at,
        "audit": audit or {},
        "request": request,
    }
    if locked and not transaction.get_connection().in_atomic_block:
        raise ValueError("locked=True needs the caller's transaction that locked the row")
    # Inside the caller's transaction (locked) no savepoint: an error rolls it all back.
    with transaction.atomic(savepoint=not locked):
        if minted.session_id is None:
            # The remote chose the identity: one audited already (listener_identity is
            # unique) is a replayed or foreign token, never a new listen, and its row
            # must not be taken over. The unique index decides, so a race cannot either.
            try:
                with transaction.atomic():
                    session = sessions.create(conversation, **row)
            except IntegrityError:
                if not ListenSession.objects.filter(listener_identity=minted.identity).exists():
                    raise
                raise refused_answer(
                    conversation.pk, f"identity {minted.identity!r} was already audited"
                ) from None
        else:
            if not locked:
                _still_in_room(conversation, minted.room_name)
            session = sessions.create(conversation, session_id=minted.session_id, **row)
        # Checked again inside the transaction that writes the audit row, on
        # locked rows: a revocation that raced the caller's authorization wins.
        refusal = entitlement.refusal(session, kept_key=kept_key)
        if refusal is not None:
            raise ApiError(_refusal_kind(via, refusal), refusal)
    return ListenerGrant(
        url=minted.url,
        token=minted.token,
        room_name=minted.room_name,
        expires_at=minted.expires_at,
        listen_session=session,
    )
