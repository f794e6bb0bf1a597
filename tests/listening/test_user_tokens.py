"""The per-user token view (``user_tokens.py``): session auth, CSRF, roles, rate limit."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from django.test import Client

from anyreach_listen.models import ListenSession
from tests.support.urls import user_token_url
from tests.support.world import TEST_LISTEN_SETTINGS, World, login


@pytest.mark.parametrize(
    ("role", "conversation", "status", "code"),
    [
        ("supervisor", "in_progress", 200, None),
        ("qa", "in_progress", 200, None),
        ("admin", "other_team", 200, None),
        ("viewer", "in_progress", 403, "listen_not_allowed"),
        ("supervisor", "other_team", 404, "conversation_not_found"),
        ("supervisor", "other_org", 404, "conversation_not_found"),
        ("supervisor", "completed", 409, "conversation_not_active"),
        ("supervisor", "no_room", 404, "room_not_found"),
    ],
)
def test_token_view_by_role(
    client: Client, world: World, role: str, conversation: str, status: int, code: str | None
) -> None:
    login(client, role)
    response = client.post(user_token_url(world.conversations[conversation].pk))
    assert response.status_code == status, response.content
    if code:
        assert response.json()["error"]["code"] == code
    else:
        body = response.json()
        assert set(body) == {"url", "token", "room_name", "expires_at"}
        session = ListenSession.objects.get()
        assert session.via == "portal" and session.user == world.users[role]
        assert jwt.decode(body["token"], options={"verify_signature": False})["video"]["hidden"]


def test_token_view_needs_login_post_and_csrf(world: World) -> None:
    url = user_token_url(world.conversations["in_progress"].pk)
    anonymous = Client()
    assert anonymous.post(url).json()["error"]["code"] == "not_authenticated"
    strict = Client(enforce_csrf_checks=True)
    login(strict, "supervisor")
    assert strict.post(url).status_code == 403  # no CSRF token
    assert strict.get(url).status_code == 405
    strict.get("/")  # sets the CSRF cookie
    response = strict.post(url, headers={"X-CSRFToken": strict.cookies["csrftoken"].value})
    assert response.status_code == 200


def test_admin_via_is_only_for_staff(client: Client, world: World) -> None:
    url = user_token_url(world.conversations["in_progress"].pk) + "?via=admin"
    login(client, "supervisor").post(url)
    assert ListenSession.objects.get().via == "portal"
    world.users["admin"].is_staff = True
    world.users["admin"].save()
    login(Client(), "admin").post(url)
    assert ListenSession.objects.filter(via="admin").count() == 1


def test_token_view_is_rate_limited_per_user(client: Client, world: World, settings: Any) -> None:
    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, "RATE_LIMIT_REQUESTS": 2}
    url = user_token_url(world.conversations["in_progress"].pk)
    login(client, "supervisor")
    assert [client.post(url).status_code for _ in range(3)] == [200, 200, 429]
    assert login(Client(), "qa").post(url).status_code == 200  # own budget
