"""B8's baseline: RoomService.PerformRpc called directly, with httpx and a room-admin token.

The same Twirp call ``anyreach_listen.livekit.service.perform_rpc`` makes, and the same
signed order as its payload (``anyreach_listen.assist.signing``, pure), with nothing of
the guidance API around it: no credential, no lookup of the call or of its agent in the
room, no audit row committed before and after, no event. B8's floor (bench/README.md).
"""

from __future__ import annotations

import uuid

import httpx
from livekit import api

from anyreach_listen.assist import signing

TIMEOUT_MS = 5000  # the guidance API's own wait for the agent (guidance.ACK_TIMEOUT_MS)


def room_admin_token(room: str, api_key: str, api_secret: str) -> str:
    grants = api.VideoGrants(room_admin=True, room=room)
    return api.AccessToken(api_key, api_secret).with_grants(grants).to_jwt()


def signed_order(
    mode: signing.Mode, text: str, *, room: str, identity: str, api_key: str, api_secret: str
) -> str:
    """A guidance order as the server signs it, for the agent ``identity``, under a fresh id."""
    order = signing.GuidanceOrder(id=str(uuid.uuid4()), mode=mode, text=text)
    return signing.sign(order, room=room, identity=identity, api_key=api_key, api_secret=api_secret)


def perform_rpc(
    http_url: str,
    api_key: str,
    api_secret: str,
    *,
    room: str,
    identity: str,
    method: str,
    payload: str,
    timeout_ms: int = TIMEOUT_MS,
) -> str:
    """The participant's answer; ``RuntimeError`` with LiveKit's words otherwise."""
    response = httpx.post(
        f"{http_url.rstrip('/')}/twirp/livekit.RoomService/PerformRpc",
        json={
            "room": room,
            "destination_identity": identity,
            "method": method,
            "payload": payload,
            "response_timeout_ms": timeout_ms,
        },
        headers={"Authorization": f"Bearer {room_admin_token(room, api_key, api_secret)}"},
        timeout=timeout_ms / 1000 + 2,
    )
    if response.status_code != 200:
        raise RuntimeError(f"PerformRpc: HTTP {response.status_code} {response.text[:300]}")
    return str(response.json().get("payload", ""))
