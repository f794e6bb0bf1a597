"""How a simulated call tells the platform it exists: through the doors integrators use.

- ``ApiRegistrar``: ``POST /core/conversations`` with a ``conversations:manage``
  API key, and ``PATCH`` to ``completed`` if the ``room_finished`` webhook has not
  completed the call shortly after its room closed.
- ``RoomMetadataRegistrar``: creates the LiveKit room with ``{"anyreach": …}``
  metadata and lets the ``room_started`` webhook register the call (zero
  integration code); the conversations service completes it if no webhook does.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Protocol

import httpx
from django.core.management.base import CommandError
from livekit import api

from anyreach_listen import conversations
from anyreach_listen.livekit.service import livekit_api, run_sync
from anyreach_listen.models import Conversation, Organization, Team

POLL_INTERVAL = 0.1


class Registrar(Protocol):
    def register(self, room_name: str, fields: dict[str, Any]) -> str:
        """Register the call in ``room_name``; its conversation id."""

    def finish(self, conversation_id: str, webhook_grace: float) -> bool:
        """Complete the call unless a webhook did within ``webhook_grace`` s; True if one did."""


def _wait_for(condition: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(POLL_INTERVAL)


class ApiRegistrar:
    def __init__(self, base_url: str, api_key: str) -> None:
        self.client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=10,
        )

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self.client.request(method, f"/core/conversations{path}", json=body)
        except httpx.HTTPError as exc:
            raise CommandError(f"The conversations API is unreachable: {exc}") from None
        if response.status_code >= 400:
            error = response.json().get("error", {}) if response.content else {}
            raise CommandError(
                f"The conversations API answered {response.status_code} "
                f"{error.get('code', '')}: {error.get('message', response.text[:200])}"
            )
        return response.json()

    def register(self, room_name: str, fields: dict[str, Any]) -> str:
        body = self._call("POST", "", {"room_name": room_name, "status": "in_progress", **fields})
        return str(body["id"])

    def finish(self, conversation_id: str, webhook_grace: float) -> bool:
        def ended() -> bool:
            return bool(self._call("GET", f"/{conversation_id}")["status"] != "in_progress")

        if _wait_for(ended, webhook_grace):
            return True
        try:
            self._call("PATCH", f"/{conversation_id}", {"status": "completed"})
        except CommandError:
            if not ended():  # the webhook completed it in the meantime: fine
                raise
            return True
        return False


class RoomMetadataRegistrar:
    def __init__(self, organization: Organization, livekit: dict[str, str]) -> None:
        self.organization = organization
        self.livekit = livekit  # url, api_key, api_secret of LiveKit's server API

    def register(self, room_name: str, fields: dict[str, Any]) -> str:
        spec = {"organization_id": str(self.organization.pk), **fields}
        run_sync(self._create_room(room_name, json.dumps({"anyreach": spec})))
        conversation = _wait_for(
            lambda: Conversation.objects.active().filter(livekit_room=room_name).first(), 15
        )
        if conversation is None:
            raise CommandError(
                f"Room {room_name} was created but no room_started webhook registered it "
                "within 15 s. Is LiveKit's webhook pointed at this app?"
            )
        return str(conversation.pk)

    async def _create_room(self, room_name: str, metadata: str) -> None:
        async with livekit_api(**self.livekit) as client:
            await client.room.create_room(
                api.CreateRoomRequest(name=room_name, metadata=metadata, empty_timeout=30)
            )

    def finish(self, conversation_id: str, webhook_grace: float) -> bool:
        active = Conversation.objects.active().filter(pk=uuid.UUID(conversation_id))
        if _wait_for(lambda: not active.exists(), webhook_grace):
            return True
        conversation = Conversation.objects.get(pk=conversation_id)
        return not conversations.finish(conversation, by="simulator")


def default_team(organization: Organization, name: str | None) -> Team | None:
    """The named team, else the organization's first team (the demo's own)."""
    if name is None:
        return organization.teams.first()
    team = organization.teams.filter(name=name).first()
    if team is None:
        raise CommandError(f"No team {name!r} in {organization.slug!r}.")
    return team
