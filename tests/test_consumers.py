"""The websocket consumer: who gets which conversation events."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User
from django.test import Client

from anyreach_listen.events import conversation_message, organization_group
from anyreach_listen.models import Conversation
from anyreach_listen.routing import websocket_urlpatterns
from tests.support.world import World, login

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _in_memory_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


async def connect(user: User | AnonymousUser) -> tuple[WebsocketCommunicator, bool]:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/listen/events/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    return communicator, connected


async def publish(conversation: Conversation, event: str) -> None:
    message = await sync_to_async(conversation_message)(conversation, event)
    await get_channel_layer().group_send(organization_group(conversation.organization_id), message)


SENTINEL = "sentinel"


async def only_the_sentinel_follows(communicator: WebsocketCommunicator, world: World) -> None:
    """Nothing sent to the socket before now reached it: a consumer handles its messages in
    order, so a sentinel published now (an event of a call every role here sees) must be
    the very next message. Proves "nothing arrived" without a fixed wait."""
    sentinel = world.conversations["in_progress"]
    await publish(sentinel, SENTINEL)
    message = await communicator.receive_json_from(timeout=5)
    assert (message["type"], message["event"], message["conversation"]["id"]) == (
        "conversation.updated",
        SENTINEL,
        str(sentinel.pk),
    ), message


async def test_anonymous_is_closed_with_4401() -> None:
    communicator, _ = await connect(AnonymousUser())
    assert await communicator.receive_output(timeout=2) == {
        "type": "websocket.close",
        "code": 4401,
    }


async def test_project_asgi_app_refuses_foreign_origins(world: World) -> None:
    from config.asgi import application

    for origin, accepted in [(b"http://127.0.0.1", True), (b"https://evil.example", False)]:
        communicator = WebsocketCommunicator(
            application, "/ws/listen/events/", headers=[(b"origin", origin)]
        )
        connected, _ = await communicator.connect()
        if accepted:
            # Through AuthMiddlewareStack with no session: accepted, then closed as anonymous.
            assert (await communicator.receive_output(timeout=2))["code"] == 4401
        else:
            assert not connected


async def test_team_of_another_organization_grants_nothing(world: World) -> None:
    from anyreach_listen.models import Membership, Team

    foreign = await sync_to_async(Team.objects.create)(organization=world.other_org, name="Ops")
    other_conversation = world.conversations["other_org"]
    other_conversation.team = foreign
    await sync_to_async(other_conversation.save)()
    # Bypass the m2m guard to simulate legacy bad data.
    membership = await sync_to_async(Membership.objects.get)(
        user=world.users["supervisor"], organization=world.org
    )
    await sync_to_async(Membership.teams.through.objects.create)(
        membership=membership, team=foreign
    )
    communicator, _ = await connect(world.users["supervisor"])
    await publish(other_conversation, "room_started")
    await only_the_sentinel_follows(communicator, world)
    await communicator.disconnect()


async def test_supervisor_gets_their_teams_events_only(world: World) -> None:
    communicator, connected = await connect(world.users["supervisor"])
    assert connected
    own, other = world.conversations["in_progress"], world.conversations["other_team"]
    await publish(other, "room_started")  # not their team: filtered out
    await publish(own, "room_started")
    message = await communicator.receive_json_from(timeout=2)
    assert message["type"] == "conversation.updated"
    assert message["event"] == "room_started"
    assert message["conversation"]["id"] == str(own.pk)
    assert message["conversation"]["is_active"] is True
    await only_the_sentinel_follows(communicator, world)
    await communicator.disconnect()


async def test_admin_gets_every_team_and_no_other_org(world: World) -> None:
    communicator, _ = await connect(world.users["admin"])
    await publish(world.conversations["other_org"], "room_started")
    await publish(world.conversations["other_team"], "room_finished")
    message = await communicator.receive_json_from(timeout=2)
    assert message["conversation"]["id"] == str(world.conversations["other_team"].pk)
    await only_the_sentinel_follows(communicator, world)
    await communicator.disconnect()


async def test_real_publisher_reaches_the_browser_after_commit(world: World) -> None:
    from anyreach_listen.events import publish_conversation, publish_listener
    from anyreach_listen.listening.minting import grant_listen

    communicator, _ = await connect(world.users["qa"])
    conversation = world.conversations["in_progress"]
    conversation.status = "completed"
    await sync_to_async(conversation.save)()
    await sync_to_async(publish_conversation)(conversation, "room_finished")
    message = await communicator.receive_json_from(timeout=2)
    assert message["conversation"]["status"] == "completed"
    assert message["conversation"]["is_active"] is False

    # Who listens now (presence): admins, supervisors and QA of the call's team get
    # listener events, a viewer of the same team never.
    admin, _ = await connect(world.users["admin"])
    viewer, _ = await connect(world.users["viewer"])
    grant = await sync_to_async(grant_listen)(world.conversations["ringing"], via="api")
    await sync_to_async(publish_listener)(grant.listen_session, "joined")
    for socket in (admin, communicator):
        message = await socket.receive_json_from(timeout=2)
        assert message["type"] == "listener.updated"
        assert message["listen_session_id"] == str(grant.listen_session.pk)
    await only_the_sentinel_follows(viewer, world)
    for socket in (communicator, admin, viewer):
        await socket.disconnect()


async def test_messages_from_the_browser_are_ignored(world: World) -> None:
    communicator, _ = await connect(world.users["viewer"])
    await communicator.send_json_to({"type": "conversation.updated", "conversation_id": "x"})
    # The consumer takes its socket's message before the sentinel published after it.
    await only_the_sentinel_follows(communicator, world)
    await communicator.disconnect()


async def test_membership_changes_reach_an_open_socket(world: World) -> None:
    from anyreach_listen.models import Membership

    communicator, _ = await connect(world.users["supervisor"])
    sales = world.conversations["other_team"]
    await publish(sales, "room_started")
    await only_the_sentinel_follows(communicator, world)  # not their team yet

    membership = await sync_to_async(Membership.objects.get)(
        user=world.users["supervisor"], organization=world.org
    )
    # Committed (transaction=True), access.changed goes out before the next event,
    # and a consumer handles its messages in order: no waiting needed.
    await sync_to_async(membership.teams.add)(world.other_team)
    await publish(sales, "room_started")
    assert (await communicator.receive_json_from(timeout=2))["conversation"]["id"] == str(sales.pk)

    await sync_to_async(membership.delete)()
    # No longer a member: the socket closes (4403), and the page reconnects with less.
    assert await communicator.receive_output(timeout=2) == {
        "type": "websocket.close",
        "code": 4403,
    }


# --- an open socket closes when its login goes away (issue 11, item 7) -------------------


async def _signed_in(role: str) -> Client:
    return await sync_to_async(login)(Client(), role)


async def _signed_in_socket(client: Client, world: World) -> WebsocketCommunicator:
    """A socket through the project's ASGI app (session cookie, AuthMiddlewareStack),
    accepted and open: it carries a published event (a closed one would not)."""
    from config.asgi import application

    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    communicator = WebsocketCommunicator(
        application,
        "/ws/listen/events/",
        headers=[(b"origin", b"http://127.0.0.1"), (b"cookie", cookie)],
    )
    connected, _ = await communicator.connect()
    assert connected
    await only_the_sentinel_follows(communicator, world)
    return communicator


async def _closed_with(communicator: WebsocketCommunicator, code: int) -> None:
    assert await communicator.receive_output(timeout=3) == {"type": "websocket.close", "code": code}


async def test_signing_out_closes_that_sessions_socket_only(world: World) -> None:
    here, there = await _signed_in("supervisor"), await _signed_in("supervisor")
    leaving, staying = await _signed_in_socket(here, world), await _signed_in_socket(there, world)
    # The second socket's sentinel (_signed_in_socket) reached the first one too.
    assert (await leaving.receive_json_from(timeout=5))["event"] == SENTINEL

    assert (await sync_to_async(here.post)("/accounts/logout/")).status_code in (200, 302)
    await _closed_with(leaving, 4401)
    await only_the_sentinel_follows(staying, world)
    await staying.disconnect()


@pytest.mark.parametrize("change", ["password", "deactivate"])
async def test_a_new_password_or_deactivation_closes_open_sockets(
    world: World, change: str
) -> None:
    communicator = await _signed_in_socket(await _signed_in("qa"), world)

    user = await User.objects.aget(username="qa")
    if change == "password":
        user.set_password("a whole new secret")
    else:
        user.is_active = False
    await sync_to_async(user.save)()
    await _closed_with(communicator, 4401)


async def test_losing_one_of_two_memberships_closes_the_socket_to_reload(world: World) -> None:
    from anyreach_listen.access.roles import Role
    from anyreach_listen.models import Membership

    await Membership.objects.acreate(
        user=world.users["qa"], organization=world.other_org, role=Role.VIEWER
    )
    communicator = await _signed_in_socket(await _signed_in("qa"), world)
    membership = await Membership.objects.aget(user=world.users["qa"], organization=world.other_org)
    await sync_to_async(membership.delete)()
    await _closed_with(communicator, 4403)


# --- open sockets are re-checked without a signal (issue 17, item 8) --------------------

RECHECK_TASK = "anyreach-listen-recheck"


@pytest.fixture
def quick_rechecks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-checks every 0.2 s at most instead of every 60 s."""
    from anyreach_listen.consumers import ConversationEventsConsumer

    # raising=False: on a consumer without re-checks the tests fail on what they check.
    monkeypatch.setattr(ConversationEventsConsumer, "recheck_interval", 0.2, raising=False)


def _recheck_tasks() -> list[asyncio.Task[Any]]:
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith(RECHECK_TASK) and not task.done()
    ]


async def _until(condition: Callable[[], bool], what: str, deadline: float = 5.0) -> None:
    ends = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < ends, f"not within {deadline} s: {what}"
        await asyncio.sleep(0.01)


async def test_the_periodic_probe_is_one_query_and_sees_each_bulk_change(world: World) -> None:
    from django.contrib.sessions.models import Session
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from anyreach_listen.access.roles import Role
    from anyreach_listen.consumers import access_fingerprint
    from anyreach_listen.models import Membership

    client = await _signed_in("qa")
    key = client.cookies["sessionid"].value
    qa = world.users["qa"]

    def probe() -> tuple[Any, ...]:
        with CaptureQueriesContext(connection) as queries:
            fingerprint = access_fingerprint(qa.pk, key)
        assert len(queries) == 1, [q["sql"] for q in queries.captured_queries]
        return fingerprint

    before = await sync_to_async(probe)()
    assert await sync_to_async(probe)() == before  # nothing changed: the same answer
    memberships = Membership.objects.filter(user=qa)
    changes = {
        "role": lambda: memberships.update(role=Role.VIEWER),
        "team": lambda: Membership.teams.through.objects.filter(membership__user=qa).delete(),
        "membership": lambda: Membership.objects.filter(user=qa).delete(),
        "password": lambda: User.objects.filter(pk=qa.pk).update(password="changed"),
        "active": lambda: User.objects.filter(pk=qa.pk).update(is_active=False),
        "session": lambda: Session.objects.filter(session_key=key).update(
            expire_date=timezone.now() - dt.timedelta(seconds=1)
        ),
    }
    for name, change in changes.items():
        await sync_to_async(change)()
        after = await sync_to_async(probe)()
        assert after != before, name
        before = after


async def test_a_bulk_deactivation_closes_an_open_socket(
    world: World, quick_rechecks: None
) -> None:
    communicator = await _signed_in_socket(await _signed_in("qa"), world)
    # .update() sends no signal: only the periodic re-check can notice.
    await User.objects.filter(username="qa").aupdate(is_active=False)
    await _closed_with(communicator, 4401)


async def test_an_expired_login_session_closes_an_open_socket(
    world: World, quick_rechecks: None
) -> None:
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    client = await _signed_in("supervisor")
    communicator = await _signed_in_socket(client, world)
    # Django's session expiry: the row stays, its expire_date passes. No signal.
    await Session.objects.filter(session_key=client.cookies["sessionid"].value).aupdate(
        expire_date=timezone.now() - dt.timedelta(seconds=1)
    )
    await _closed_with(communicator, 4401)


async def test_a_membership_removed_without_a_signal_closes_an_open_socket(
    world: World, quick_rechecks: None
) -> None:
    from django.db import connection

    from anyreach_listen.models import Membership

    communicator = await _signed_in_socket(await _signed_in("qa"), world)

    def delete_in_sql() -> None:
        # What no signal reports: SQL outside the ORM (a migration, a database fix).
        user_id = [world.users["qa"].pk]
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM anyreach_listen_membership_teams WHERE membership_id IN "
                "(SELECT id FROM anyreach_listen_membership WHERE user_id = %s)",
                user_id,
            )
            cursor.execute("DELETE FROM anyreach_listen_membership WHERE user_id = %s", user_id)
        assert not Membership.objects.filter(user=world.users["qa"]).exists()

    await sync_to_async(delete_in_sql)()
    await _closed_with(communicator, 4403)


async def test_a_role_changed_by_a_bulk_update_reloads_the_policy(
    world: World, quick_rechecks: None
) -> None:
    from anyreach_listen.access.roles import Role
    from anyreach_listen.models import Membership
    from anyreach_listen.transcripts import SegmentIn, record

    communicator, _ = await connect(world.users["viewer"])
    call = world.conversations["in_progress"]
    await sync_to_async(record)(call, [SegmentIn("v0", "user", "Not for viewers.", True)])
    await only_the_sentinel_follows(communicator, world)  # a viewer gets no line

    # Promoted by .update() (no signal): once re-checked, the socket carries lines. Each
    # round says a line, then a sentinel: before the re-check only the sentinel arrives.
    await Membership.objects.filter(user=world.users["viewer"]).aupdate(role=Role.QA)
    ends, n = time.monotonic() + 5, 0
    while True:
        assert time.monotonic() < ends, "the policy was not reloaded"
        n += 1
        await sync_to_async(record)(call, [SegmentIn(f"v{n}", "user", "Now readable.", True)])
        await publish(call, SENTINEL)
        message = await communicator.receive_json_from(timeout=2)
        if message["type"] != "conversation.updated":
            break
        assert message["event"] == SENTINEL, message
    assert message["type"] == "transcript.segment"
    assert message["segment"]["text"] == "Now readable."
    await communicator.disconnect()


async def test_the_recheck_task_runs_while_open_and_stops_on_disconnect(world: World) -> None:
    communicator, connected = await connect(world.users["supervisor"])
    assert connected
    assert len(_recheck_tasks()) == 1
    await communicator.disconnect()
    await _until(lambda: not _recheck_tasks(), "the re-check task ended")


async def test_the_recheck_task_stops_when_the_socket_closes_itself(
    world: World, quick_rechecks: None
) -> None:
    communicator, _ = await connect(world.users["qa"])
    assert len(_recheck_tasks()) == 1
    await User.objects.filter(username="qa").aupdate(is_active=False)
    await _closed_with(communicator, 4401)
    await _until(lambda: not _recheck_tasks(), "the re-check task ended")
    await communicator.disconnect()


# --- a socket whose access cannot be re-checked does not keep it (issue 17, item 8) -------


def _failing_fingerprints(monkeypatch: pytest.MonkeyPatch, *outcomes: bool) -> list[bool]:
    """``access_fingerprint`` fails (False) or answers as before (True) in turn, then
    fails for good; returns the outcomes of the calls made so far."""
    from django.db import OperationalError

    from anyreach_listen import consumers

    real, plan, made = consumers.access_fingerprint, list(outcomes), []

    def fingerprint(user_id: Any, session_key: str | None) -> tuple[Any, ...]:
        ok = plan.pop(0) if plan else False
        made.append(ok)
        if not ok:
            raise OperationalError("database is away")
        return real(user_id, session_key)

    monkeypatch.setattr(consumers, "access_fingerprint", fingerprint)
    return made


CLOSED_TO_RECONNECT = {"type": "websocket.close", "code": 4403}


async def test_an_open_socket_closes_after_three_failed_rechecks_in_a_row(
    world: World, quick_rechecks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    communicator, connected = await connect(world.users["supervisor"])
    assert connected
    made = _failing_fingerprints(monkeypatch)  # from now on the database is away
    # 4403: the page reconnects, and connecting checks its access afresh.
    # A deadline, not a timing: the rounds take 0.1-0.2 s each.
    assert await communicator.receive_output(timeout=10) == CLOSED_TO_RECONNECT
    assert made == [False, False, False]
    await _until(lambda: not _recheck_tasks(), "the re-check task ended")
    await communicator.disconnect()


async def test_failed_rechecks_must_come_in_a_row_to_close_a_socket(
    world: World, quick_rechecks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    communicator, connected = await connect(world.users["supervisor"])
    assert connected
    # Blips: two failures, an answer, two failures, an answer; then the outage.
    made = _failing_fingerprints(monkeypatch, False, False, True, False, False, True)
    # A deadline, not a timing: the rounds take 0.1-0.2 s each.
    assert await communicator.receive_output(timeout=10) == CLOSED_TO_RECONNECT
    assert made == [False, False, True, False, False, True, False, False, False]
    await communicator.disconnect()
