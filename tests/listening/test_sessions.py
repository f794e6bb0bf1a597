"""listening/sessions.py: a listen session's transitions (opened, joined, left, the room
closed, revoked), each published once; no other module writes them, and the models
publish nothing."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from anyreach_listen.listening import sessions
from anyreach_listen.models import ApiKey, ConversationStatus, ListenSession, ListenVia
from tests.support.listeners import mint_session
from tests.support.world import World

ROOT = Path(__file__).resolve().parent.parent.parent
T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)


def at(seconds: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    events: list[str] = []
    monkeypatch.setattr(
        sessions, "publish_listener", lambda s, e: events.append(f"{s.listener_identity}:{e}")
    )
    return events


def test_create_writes_the_audit_row_with_its_who(world: World) -> None:
    key = ApiKey.objects.get(organization=world.org, name="rs")
    request = RequestFactory().get("/", REMOTE_ADDR="198.51.100.7", HTTP_USER_AGENT="x" * 600)
    call = world.conversations["in_progress"]
    session = sessions.create(
        call,
        identity="listener-probe",
        via=ListenVia.API,
        expires_at=at(600),
        audit={"api_key": key},
        request=request,
    )
    row = ListenSession.objects.get(pk=session.pk)
    assert (row.conversation_id, row.listener_identity, row.expires_at) == (
        call.pk,
        "listener-probe",
        at(600),
    )
    assert (row.api_key_id, row.user_id, row.credential_label) == (key.pk, None, f"API key {key}")
    assert (row.client_ip, len(row.user_agent)) == ("198.51.100.7", sessions.USER_AGENT_MAX)
    assert (row.joined_at, row.left_at, row.revoked_at) == (None, None, None)


def test_join_and_leave_take_each_report_once(world: World, published: list[str]) -> None:
    session = mint_session(world, user=world.users["supervisor"])
    name = session.listener_identity
    assert sessions.join(session, at(10))
    assert not sessions.join(session, at(10))  # a copy
    assert sessions.leave(session, at(20))
    assert not sessions.leave(session, at(20))  # a copy
    assert not sessions.leave(session, at(15))  # older than the leave recorded
    assert not sessions.join(session, at(20))  # not after the leave: no rejoin
    assert sessions.join(session, at(30))  # rejoined with the same token
    row = ListenSession.objects.get(pk=session.pk)
    assert (row.joined_at, row.left_at) == (at(10), None)
    assert published == [f"{name}:joined", f"{name}:left", f"{name}:joined"]


def test_a_closed_room_makes_its_listeners_leave(world: World, published: list[str]) -> None:
    supervisor = world.users["supervisor"]
    inside, gone, never = (mint_session(world, user=supervisor) for _ in range(3))
    ListenSession.objects.filter(pk=inside.pk).update(joined_at=at(50))
    ListenSession.objects.filter(pk=gone.pk).update(joined_at=at(5), left_at=at(8))
    sessions.close_room(world.conversations["in_progress"], at(40))
    rows = {s.pk: s.left_at for s in ListenSession.objects.all()}
    # Never before it joined (LiveKit's clock and ours may differ a little).
    assert rows == {inside.pk: at(50), gone.pk: at(8), never.pk: None}
    assert published == [f"{inside.listener_identity}:left"]


def test_revoke_marks_the_sessions_and_loads_their_calls(
    world: World, published: list[str]
) -> None:
    one, two = (mint_session(world, user=world.users["supervisor"]) for _ in range(2))
    revoked = sessions.revoke(ListenSession.objects.filter(pk__in=[one.pk, two.pk]))
    assert {s.pk for s in revoked} == {one.pk, two.pk}
    assert all(s.revoked_at is not None for s in ListenSession.objects.all())
    with CaptureQueriesContext(connection) as queries:
        assert {s.conversation.livekit_room for s in revoked} == {"room-in_progress"}
    assert queries.captured_queries == []
    assert sorted(published) == sorted(
        [f"{one.listener_identity}:revoked", f"{two.listener_identity}:revoked"]
    )


def test_a_call_ended_by_its_model_alone_publishes_nothing(
    world: World, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    """Publishing is the service's (conversations.py); Conversation.finish only saves."""
    call = world.conversations["in_progress"]
    with django_capture_on_commit_callbacks() as callbacks:
        assert call.finish(timezone.now(), by="test", status=ConversationStatus.COMPLETED)
    assert callbacks == []
    source = (ROOT / "anyreach_listen" / "models.py").read_text()
    assert "anyreach_listen.events" not in source and "publish_" not in source


def test_no_other_module_writes_a_sessions_state() -> None:
    writes = re.compile(
        r"ListenSession\.objects\.create|(?<!class )ListenSession\(|"
        r"session\.(joined_at|left_at|revoked_at) =|update_fields=\[\"(joined_at|left_at)\""
    )
    writers = [
        str(path.relative_to(ROOT))
        for folder in ("anyreach_listen", "portal", "demo")
        for path in (ROOT / folder).rglob("*.py")
        if "migrations" not in path.parts and writes.search(path.read_text())
    ]
    assert writers == ["anyreach_listen/listening/sessions.py"]
