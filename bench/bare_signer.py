"""B1's baseline: a bare ASGI app that only signs the listener JWT (no Django, no database).

    daphne bench.bare_signer:application

Every POST answers what the listener-token endpoint answers, with a JWT signed like
``minting.sign_listener_token``'s from the same ``LIVEKIT_*`` variables, and nothing
else (no credential check, lookup or audit row): B1's floor (bench/README.md).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from livekit.api import AccessToken, VideoGrants

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ROOM = "bench-room"
TTL = dt.timedelta(seconds=300)


def sign() -> dict[str, str]:
    grants = VideoGrants(
        room_join=True,
        room=ROOM,
        can_subscribe=True,
        can_publish=False,
        can_publish_data=False,
        can_update_own_metadata=False,
        hidden=True,
    )
    token = (
        AccessToken(os.environ["LIVEKIT_API_KEY"], os.environ["LIVEKIT_API_SECRET"])
        .with_identity(f"listener-{uuid.uuid4()}")
        .with_name("Listener")
        .with_ttl(TTL)
        .with_grants(grants)
        .with_metadata(json.dumps({"listener": True, "embed_origins": ["*"]}))
        .to_jwt()
    )
    expires = dt.datetime.now(dt.UTC) + TTL
    return {
        "url": os.environ.get("LIVEKIT_URL", ""),
        "token": token,
        "room_name": ROOM,
        "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass  # the request body is not used
    if scope["method"] == "POST":
        status, body = 200, json.dumps(sign()).encode()
    else:
        status, body = 405, b'{"error": "Use POST."}'
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": body})
