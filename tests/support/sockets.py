"""The event stream's websocket in tests: a user's socket, and what reached it so far.

"Nothing else arrived" is proved without a fixed wait: a sentinel event published now
to the organization's group arrives after everything sent before it, since a group
delivers in order and a consumer handles its messages one by one.
"""

from __future__ import annotations

import itertools
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User

from anyreach_listen.events import conversation_message, organization_group
from anyreach_listen.models import Conversation
from anyreach_listen.routing import websocket_urlpatterns
from tests.support.world import World

SENTINEL = "sentinel"
_marks = itertools.count()


async def connect(user: User | AnonymousUser) -> WebsocketCommunicator:
    """``user``'s socket to the event stream, accepted."""
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/listen/events/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def publish(conversation: Conversation, event: str) -> None:
    """A ``conversation.updated`` for ``conversation`` to its organization's sockets."""
    message = await sync_to_async(conversation_message)(conversation, event)
    await get_channel_layer().group_send(organization_group(conversation.organization_id), message)


def is_sentinel(message: dict[str, Any]) -> bool:
    return str(message.get("event", "")).startswith(SENTINEL)


def _seen_by_everyone(communicator: WebsocketCommunicator, world: World) -> Conversation:
    """A call the socket's user sees whatever their role: the world's in-progress Support
    call (every member of Acme is in Support), or Other's call for Other's admin."""
    outsider = communicator.scope["user"] == world.users["outsider"]
    return world.conversations["other_org" if outsider else "in_progress"]


async def everything(communicator: WebsocketCommunicator, world: World) -> list[dict[str, Any]]:
    """Every message the socket got before now, other reads' sentinels left out."""
    mark = f"{SENTINEL}-{next(_marks)}"
    await publish(_seen_by_everyone(communicator, world), mark)
    messages = []
    while (message := await communicator.receive_json_from(timeout=5)).get("event") != mark:
        if not is_sentinel(message):
            messages.append(message)
    return messages
