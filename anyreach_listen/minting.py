"""Minting listener tokens: the one place every path (API, portal, admin) goes through."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jwt
from livekit.api import AccessToken, VideoGrants

from .conf import listen_settings
from .errors import ApiError
from .models import ApiKey, Conversation, ListenSession, PersonalAccessToken

if TYPE_CHECKING:
    from django.contrib.auth.models import User

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
        return {
            "url": self.url,
            "token": self.token,
            "room_name": self.room_name,
            "expires_at": format_utc(self.expires_at),
        }


def format_utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ensure_listenable(conversation: Conversation) -> None:
    """The contract's state rules: 409 when not active, 404 when there is no room."""
    if not conversation.is_active:
        raise ApiError(
            409,
            "conversation_not_active",
            f"The conversation is {conversation.get_status_display().lower()}; "
            "only triggered, ringing or in-progress calls can be listened to.",
        )
    if not conversation.livekit_room:
        raise ApiError(404, "room_not_found", "The conversation has no LiveKit room.")


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


def mint_listener_token(
    conversation: Conversation,
    *,
    via: str,
    user: User | None = None,
    api_key: ApiKey | None = None,
    personal_access_token: PersonalAccessToken | None = None,
    client_ip: str | None = None,
    user_agent: str = "",
) -> ListenerGrant:
    """Mint a listener JWT for an active conversation with a room and audit it.

    Callers check credentials, permissions and the conversation's state first;
    this function only refuses what would make an invalid token.
    """
    room_name = conversation.livekit_room
    if not room_name:
        raise ValueError("conversation has no LiveKit room")
    session_id = uuid.uuid4()
    identity = f"{LISTENER_IDENTITY_PREFIX}{session_id}"
    embed_origins = conversation.organization.allowed_embed_origins
    token = (
        AccessToken(listen_settings.LIVEKIT_API_KEY, listen_settings.LIVEKIT_API_SECRET)
        .with_identity(identity)
        .with_name("Listener")
        .with_ttl(dt.timedelta(seconds=int(listen_settings.LISTENER_TOKEN_TTL)))
        .with_grants(listener_grants(room_name))
        # The frame reads this to refuse embedding origins the organization did not allow.
        .with_metadata(json.dumps({"listener": True, "embed_origins": embed_origins}))
        .to_jwt()
    )
    # expires_at must equal the JWT's exp exactly, so read it back from the token.
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    expires_at = dt.datetime.fromtimestamp(exp, tz=dt.UTC)
    session = ListenSession.objects.create(
        id=session_id,
        conversation=conversation,
        user=user,
        api_key=api_key,
        personal_access_token=personal_access_token,
        listener_identity=identity,
        via=via,
        expires_at=expires_at,
        client_ip=client_ip,
        user_agent=user_agent[:500],
    )
    return ListenerGrant(
        url=listen_settings.LIVEKIT_URL,
        token=token,
        room_name=room_name,
        expires_at=expires_at,
        listen_session=session,
    )
