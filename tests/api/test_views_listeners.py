"""api/views.py: GET /core/conversations/{id}/listeners, who is listening now (scopes, PATs,
what a listener shows, unknown and invisible calls)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from anyreach_listen.listening import sessions
from anyreach_listen.models import Conversation, ListenVia
from tests.api.test_views_transcripts import assert_error, validate
from tests.support.api import call as send
from tests.support.world import World

pytestmark = pytest.mark.django_db


def listeners_of(conversation: Conversation | str) -> str:
    pk = conversation.pk if isinstance(conversation, Conversation) else conversation
    return f"/core/conversations/{pk}/listeners"


def test_the_listeners_in_the_room_now(client: Client, world: World) -> None:
    call = world.conversations["in_progress"]
    supervisor = world.users["supervisor"]
    supervisor.first_name, supervisor.last_name = "Ana", "Ruiz"
    supervisor.save()
    now = timezone.now()
    expires = now + dt.timedelta(hours=1)
    ana = sessions.create(call, identity="listener-ana", via=ListenVia.PORTAL,
                          expires_at=expires, audit={"user": supervisor})  # fmt: skip
    key = world.org.api_keys.get(name="m")
    bot = sessions.create(call, identity="listener-bot", via=ListenVia.API,
                          expires_at=expires, audit={"api_key": key})  # fmt: skip
    gone = sessions.create(call, identity="listener-gone", via=ListenVia.PORTAL,
                           expires_at=expires, audit={"user": world.users["admin"]})  # fmt: skip
    sessions.join(ana, now)
    sessions.join(bot, now + dt.timedelta(seconds=1))
    sessions.join(gone, now)
    sessions.leave(gone, now + dt.timedelta(seconds=2))

    response = send(client, "get", listeners_of(call), world.secrets["ak_read_sensitive"])
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    validate("ListenerList", response.json())
    listeners = response.json()["listeners"]
    assert [(entry["id"], entry["via"], entry["name"]) for entry in listeners] == [
        (str(ana.pk), "portal", "Ana Ruiz"),
        (str(bot.pk), "api", f"API key {key}"),
    ]
    assert listeners[0]["joined_at"].endswith("Z")


@pytest.mark.parametrize(
    ("secret", "status"),
    [
        ("ak_read_sensitive", 200),
        ("ak_manage", 200),
        ("ak_no_scope", 403),  # conversations:read only
        ("pat_admin", 200),
        ("pat_supervisor", 200),
        ("pat_qa", 200),
        ("pat_viewer", 403),
        ("pat_supervisor_read_only", 403),
    ],
)
def test_who_may_see_the_listeners(client: Client, world: World, secret: str, status: int) -> None:
    org = str(world.org.pk) if secret.startswith("pat_") else None
    response = send(client, "get", listeners_of(world.conversations["in_progress"]),
                    world.secrets[secret], org=org)  # fmt: skip
    assert response.status_code == status, response.content
    if status == 403:
        assert_error(response, 403, "insufficient_scope")
    else:
        assert response.json() == {"listeners": []}


@pytest.mark.parametrize("which", ["other_org", "unknown", "not-a-uuid", "other_team"])
def test_unknown_or_invisible_calls_are_404(client: Client, world: World, which: str) -> None:
    target = {
        "unknown": "00000000-0000-0000-0000-000000000000",
        "not-a-uuid": "not-a-uuid",
    }.get(which) or world.conversations[which]
    response = send(client, "get", listeners_of(target), world.secrets["pat_supervisor"],
                    org=str(world.org.pk))  # fmt: skip
    assert_error(response, 404, "conversation_not_found")


def test_reads_count_against_the_read_limit(client: Client, world: World, settings: object) -> None:
    from tests.support.world import TEST_LISTEN_SETTINGS

    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, "READ_RATE_LIMIT_REQUESTS": 2}  # type: ignore[attr-defined]
    path = listeners_of(world.conversations["in_progress"])
    for _ in range(2):
        assert send(client, "get", path, world.secrets["ak_manage"]).status_code == 200
    assert_error(send(client, "get", path, world.secrets["ak_manage"]), 429, "rate_limited")
