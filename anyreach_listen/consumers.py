"""Websocket consumer: conversation and listener events for the signed-in user.

Joins the channel-layer group of every organization the user belongs to and
forwards an event only when the user may see that conversation.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import access
from .events import organization_group
from .models import Conversation


def conversation_payload(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": str(conversation.pk),
        "status": conversation.status,
        "status_display": conversation.get_status_display(),
        "is_active": conversation.is_active,
        "agent_label": conversation.agent_label,
        "caller_label": conversation.caller_label,
        "team": conversation.team.name if conversation.team else None,
        "started_at": conversation.started_at.isoformat() if conversation.started_at else None,
        "ended_at": conversation.ended_at.isoformat() if conversation.ended_at else None,
    }


class ConversationEventsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Accept first so the browser sees code 4401 (a refused handshake is
            # only 1006) and stops reconnecting.
            await self.accept()
            await self.close(code=4401)
            return
        self.policy = access.for_user(user)
        # Channels joins ``groups`` before connect() and leaves them on disconnect;
        # ours depend on the user, so they are joined here.
        self.groups = [organization_group(org) for org in await self._organization_ids()]
        for group in self.groups:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The stream is one-way; anything a browser sends is ignored."""

    async def conversation_updated(self, message: dict[str, Any]) -> None:
        await self._forward("conversation.updated", message)

    async def listener_updated(self, message: dict[str, Any]) -> None:
        await self._forward("listener.updated", message)

    async def _forward(self, kind: str, message: dict[str, Any]) -> None:
        payload = await self._visible(message["conversation_id"])
        if payload is None:
            return
        out = {"type": kind, "event": message.get("event"), "conversation": payload}
        if "listen_session_id" in message:
            out["listen_session_id"] = message["listen_session_id"]
        await self.send_json(out)

    @database_sync_to_async
    def _organization_ids(self) -> list[str]:
        return [str(organization_id) for organization_id in self.policy.memberships]

    @database_sync_to_async
    def _visible(self, conversation_id: str) -> dict[str, Any] | None:
        conversation = self.policy.find(conversation_id)
        return conversation_payload(conversation) if conversation else None
