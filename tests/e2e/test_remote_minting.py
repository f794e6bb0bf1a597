"""Remote minting: the portal mints through this project's own API on a live server."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from django.test import Client

from anyreach_listen.models import ListenSession
from tests.support.remote import mint_as_supervisor, mirror, remote
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def test_portal_mints_through_the_live_api(
    stack: Stack, client: Client, settings: Any, db: None
) -> None:
    remote(settings, stack.base_url, stack.seed["api_keys"]["read_sensitive"])
    # The local copy knows the call's room: a token for any other room is refused.
    conversation = mirror(stack.seed["conversations"]["active"], room="demo-seeded-call")
    response = mint_as_supervisor(client, conversation)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["room_name"] == "demo-seeded-call"
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


def test_a_live_answer_for_another_room_is_refused(
    stack: Stack, client: Client, settings: Any, db: None
) -> None:
    # The local copy names another room than the platform's call: no token, no row.
    remote(settings, stack.base_url, stack.seed["api_keys"]["read_sensitive"])
    conversation = mirror(stack.seed["conversations"]["active"], room="some-other-room")
    response = mint_as_supervisor(client, conversation)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "remote_mint_invalid"
    assert not ListenSession.objects.exists()


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
