"""Remote minting: the portal mints through this project's own API on a live server."""

from __future__ import annotations

import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from django.contrib.auth.models import User
from django.test import Client

from anyreach_listen.models import (
    Conversation,
    ConversationStatus,
    ListenSession,
    Membership,
    Organization,
    Team,
)
from anyreach_listen.roles import Role
from tests.support.processes import free_port
from tests.support.stack import Stack
from tests.support.world import TEST_LISTEN_SETTINGS

pytestmark = pytest.mark.e2e


def mirror(conversation_id: str) -> Conversation:
    """The portal's local copy of a platform conversation, visible to a supervisor."""
    org = Organization.objects.create(name="Mirror", slug=f"m-{uuid.uuid4().hex[:8]}")
    team = Team.objects.create(organization=org, name="Support")
    user = User.objects.create_user(username=f"sup-{org.slug}", password="pw")
    Membership.objects.create(user=user, organization=org, role=Role.SUPERVISOR).teams.set([team])
    return Conversation.objects.create(
        id=conversation_id,
        organization=org,
        team=team,
        status=ConversationStatus.IN_PROGRESS,
        livekit_room=f"local-{conversation_id}",
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


def test_portal_mints_through_the_live_api(
    stack: Stack, client: Client, settings: Any, db: None
) -> None:
    remote(settings, stack.base_url, stack.seed["api_keys"]["read_sensitive"])
    conversation = mirror(stack.seed["conversations"]["active"])
    response = mint_as_supervisor(client, conversation)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["room_name"] == "demo-seeded-call"  # the platform's room, not the local one
    claims = jwt.decode(
        body["token"],
        stack.env["LIVEKIT_API_SECRET"],
        algorithms=["HS256"],
        options={"verify_aud": False},
    )
    assert claims["video"]["hidden"] is True and claims["video"]["canPublish"] is False
    local = ListenSession.objects.get(listener_identity=claims["sub"])
    assert local.via == "portal" and local.user is not None
    # The platform audited the same listener under its API key.
    rows = stack.query(
        "SELECT via FROM anyreach_listen_listensession WHERE listener_identity = ?", claims["sub"]
    )
    assert [row["via"] for row in rows] == ["api"]


@pytest.mark.parametrize(
    ("seeded", "status", "code"),
    [("completed", 409, "conversation_not_active"), ("no_room", 404, "room_not_found")],
)
def test_remote_404_and_409_become_clear_errors(
    stack: Stack, client: Client, settings: Any, db: None, seeded: str, status: int, code: str
) -> None:
    remote(settings, stack.base_url, stack.seed["api_keys"]["read_sensitive"])
    response = mint_as_supervisor(client, mirror(stack.seed["conversations"][seeded]))
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


def test_refused_credential_is_a_502_without_leaking_it(
    stack: Stack, client: Client, settings: Any, db: None
) -> None:
    remote(settings, stack.base_url, stack.seed["api_keys"]["no_scope"])
    response = mint_as_supervisor(client, mirror(stack.seed["conversations"]["active"]))
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "remote_rejected"
    assert "ak_" not in response.content.decode()


def test_unreachable_remote_is_a_502_after_retries(client: Client, settings: Any, db: None) -> None:
    remote(settings, f"http://127.0.0.1:{free_port()}", "ak_x", RETRIES=2, TIMEOUT=1)
    response = mint_as_supervisor(client, mirror(str(uuid.uuid4())))
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "remote_unavailable"


Scripted = tuple[str, list[str], list[tuple[int, dict[str, str], bytes]]]


def _token_body() -> bytes:
    token = jwt.encode({"sub": f"listener-{uuid.uuid4()}", "exp": 2_000_000_000}, "k" * 32)
    return json.dumps(
        {"url": "ws://lk", "token": token, "room_name": "r", "expires_at": "2033-05-18T03:33:20Z"}
    ).encode()


@pytest.fixture
def scripted_remote() -> Iterator[Scripted]:
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


def test_5xx_is_retried_with_backoff(
    scripted_remote: Scripted, client: Client, settings: Any, db: None
) -> None:
    url, attempts, script = scripted_remote
    script += [(503, {}, b""), (502, {}, b""), (200, {}, _token_body())]
    remote(settings, url, "ak_secret_value", RETRIES=2)
    response = mint_as_supervisor(client, mirror(str(uuid.uuid4())))
    assert response.status_code == 200
    assert attempts == ["Bearer ak_secret_value"] * 3


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected", "code"),
    [
        (429, {"Retry-After": "7"}, b"{}", 429, "rate_limited"),
        (
            200,
            {},
            b'{"url": "ws://lk", "token": "not-a-jwt", "room_name": "r", "expires_at": "x"}',
            502,
            "remote_invalid",
        ),
        (200, {}, b"<html>", 502, "remote_rejected"),
        (500, {}, b"", 502, "remote_unavailable"),
    ],
)
def test_remote_answers_are_mapped(
    scripted_remote: Scripted,
    client: Client,
    settings: Any,
    db: None,
    status: int,
    headers: dict[str, str],
    body: bytes,
    expected: int,
    code: str,
) -> None:
    url, attempts, script = scripted_remote
    script.append((status, headers, body))
    remote(settings, url, "ak_x", RETRIES=1)
    response = mint_as_supervisor(client, mirror(str(uuid.uuid4())))
    assert response.status_code == expected
    assert response.json()["error"]["code"] == code
    assert len(attempts) == (2 if status >= 500 else 1)
    if status == 429:
        assert response["Retry-After"] == "7"
