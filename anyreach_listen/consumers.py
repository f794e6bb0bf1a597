"""Websocket consumer: conversation and listener events for the signed-in user.

Joins the channel-layer group of every organization the user belongs to, and
the user's own group. Each event carries its payload and the conversation's
organization and team, so the consumer decides in memory whether its user may
see it (``UserAccess.sees``): one event to many sockets costs no query each.
When the user's memberships change, ``access.changed`` on the user's group
reloads the policy and the organization groups.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import access
from .events import organization_group, user_group


class ConversationEventsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Accept first so the browser sees code 4401 (a refused handshake is
            # only 1006) and stops reconnecting.
            await self.accept()
            await self.close(code=4401)
            return
        # Channels joins ``groups`` before connect() and leaves them on disconnect;
        # ours depend on the user, so they are joined here.
        self.groups = [user_group(user.pk)]
        await self.channel_layer.group_add(self.groups[0], self.channel_name)
        await self._load_access()
        await self.accept()

    async def _load_access(self) -> None:
        self.policy = await self._policy()
        wanted = [user_group(self.policy.user.pk)]
        wanted += [organization_group(org) for org in self.policy.memberships]
        for group in set(self.groups) - set(wanted):
            await self.channel_layer.group_discard(group, self.channel_name)
        for group in set(wanted) - set(self.groups):
            await self.channel_layer.group_add(group, self.channel_name)
        self.groups = wanted

    @database_sync_to_async
    def _policy(self) -> access.UserAccess:
        policy = access.for_user(self.scope["user"])
        # Load both now, in this thread: the event handlers must not query.
        policy.memberships  # noqa: B018
        policy.teams  # noqa: B018
        return policy

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The stream is one-way; anything a browser sends is ignored."""

    async def access_changed(self, message: dict[str, Any]) -> None:
        await self._load_access()

    async def conversation_updated(self, message: dict[str, Any]) -> None:
        await self._forward("conversation.updated", message)

    async def listener_updated(self, message: dict[str, Any]) -> None:
        await self._forward("listener.updated", message)

    async def _forward(self, kind: str, message: dict[str, Any]) -> None:
        organization_id = access.parse_uuid(message["organization_id"])
        team_id = access.parse_uuid(message["team_id"]) if message.get("team_id") else None
        if organization_id is None or not self.policy.sees(organization_id, team_id):
            return
        out = {"type": kind, "event": message.get("event"), "conversation": message["conversation"]}
        if "listen_session_id" in message:
            out["listen_session_id"] = message["listen_session_id"]
        await self.send_json(out)
