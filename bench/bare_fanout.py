"""B4's baseline: a bare channel-layer broadcast to bare websocket consumers.

    DJANGO_SETTINGS_MODULE=bench.settings daphne bench.bare_fanout:application

The app's channel layer and daphne and a message shaped like its ``conversation.updated``,
minus everything ours does per event and per client (webhook check, database write,
session, visibility check), so B4's ratio is the cost of that work (bench/README.md).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django.setup()

from channels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

GROUP = "bench-fanout"
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# What the app's consumer sends for one conversation event, field for field.
CONVERSATION = {
    "id": "00000000-0000-0000-0000-000000000000",
    "status": "in_progress",
    "status_display": "In progress",
    "is_active": True,
    "agent_label": "Agent 0",
    "caller_label": "+1 555 0000",
    "team": "Support",
    "started_at": "2026-01-01T00:00:00+00:00",
    "ended_at": None,
}


class BareConsumer(AsyncJsonWebsocketConsumer):
    groups = [GROUP]  # joined by Channels before connect()

    async def bench_event(self, message: dict[str, Any]) -> None:
        await self.send_json(
            {
                "type": "conversation.updated",
                "event": message["event"],
                "conversation": CONVERSATION,
            }
        )


# ``POST /send`` makes one ``group_send``; every websocket on ``/ws/`` is in the group.
async def send_view(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    while (await receive()).get("more_body"):
        pass
    status = 405
    if scope["method"] == "POST":
        layer = get_channel_layer()
        assert layer is not None
        await layer.group_send(GROUP, {"type": "bench.event", "event": "agent_joined"})
        status = 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})


application = ProtocolTypeRouter(
    {"http": send_view, "websocket": URLRouter([path("ws/", BareConsumer.as_asgi())])}
)
