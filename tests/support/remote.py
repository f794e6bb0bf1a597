"""Minting through a remote platform: the portal's local mirror of a call, the
``REMOTE_MINT`` setting, and a scripted stand-in platform on a local http.server."""

from __future__ import annotations

import contextlib
import http.server
import threading
import uuid
from collections.abc import Iterator
from typing import Any

from django.contrib.auth.models import User
from django.test import Client

from anyreach_listen.access.roles import Role
from anyreach_listen.models import (
    Conversation,
    ConversationStatus,
    Membership,
    Organization,
    Team,
)
from tests.support.world import TEST_LISTEN_SETTINGS


def mirror(conversation_id: str, room: str | None = None) -> Conversation:
    """The portal's local copy of a platform conversation, visible to a supervisor.

    ``room``: the platform's room of the call (a remote token for any other room is
    refused); default ``local-<id>``.
    """
    org = Organization.objects.create(name="Mirror", slug=f"m-{uuid.uuid4().hex[:8]}")
    team = Team.objects.create(organization=org, name="Support")
    user = User.objects.create_user(username=f"sup-{org.slug}", password="pw")
    Membership.objects.create(user=user, organization=org, role=Role.SUPERVISOR).teams.set([team])
    return Conversation.objects.create(
        id=conversation_id,
        organization=org,
        team=team,
        status=ConversationStatus.IN_PROGRESS,
        livekit_room=room or f"local-{conversation_id}",
    )


def mint_as_supervisor(client: Client, conversation: Conversation) -> Any:
    membership = Membership.objects.get(organization=conversation.organization)
    client.force_login(membership.user)
    return client.post(f"/listen/conversations/{conversation.pk}/token")


def remote(settings: Any, url: str, key: str, **extra: Any) -> None:
    settings.ANYREACH_LISTEN = {
        **TEST_LISTEN_SETTINGS,
        "REMOTE_MINT": {"URL": url, "API_KEY": key, "BACKOFF": 0, **extra},
    }


Scripted = tuple[str, list[str], list[tuple[int, dict[str, str], bytes]]]


@contextlib.contextmanager
def scripted_platform() -> Iterator[Scripted]:
    """A stand-in platform answering from a script: tests our retry and mapping logic.

    Yields its URL, the Authorization headers it received, and the script to fill:
    (status, headers, body) per request, the last one repeating.
    """
    attempts: list[str] = []
    script: list[tuple[int, dict[str, str], bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            attempts.append(self.headers["Authorization"])
            status, headers, body = script[min(len(attempts), len(script)) - 1]
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", attempts, script
    finally:
        server.shutdown()
        server.server_close()
