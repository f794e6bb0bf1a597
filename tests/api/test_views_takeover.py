"""api/views.py: POST, GET and DELETE /core/conversations/{id}/takeover (the take_over scope,
PATs cut down to their owner's role, the empty body, the token's grants, renewal, one holder
at a time, the hand-back, each error with its code), and two holders racing on PostgreSQL.

LiveKit is faked (tests/assist/test_guidance.py's ``FakeLiveKit``, its agent also answering
pause and resume orders); the real room: tests/e2e/test_takeover.py.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import jwt
import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.test import Client
from livekit import api

from anyreach_listen.access.credentials import issue_api_key, issue_pat
from anyreach_listen.access.roles import Scope
from anyreach_listen.assist import signing
from anyreach_listen.assist.takeover import IDENTITY_PREFIX
from anyreach_listen.livekit import service
from anyreach_listen.models import Conversation, Takeover, TakeoverEnd
from tests.api.test_views_transcripts import assert_error, validate
from tests.assist.test_guidance import KEY, SECRET, FakeLiveKit, person
from tests.support.api import call as send
from tests.support.world import World

AGENT = "agent-ava"
# The portal roles that may take over through a PAT that asks for every scope.
ALLOWED, REFUSED = ("pat_admin", "pat_supervisor"), ("pat_qa", "pat_viewer")
NEEDS = "Needs the conversations:take_over scope."


class AgentRoom(FakeLiveKit):
    """``FakeLiveKit``'s room and agent, its answers to a takeover's ``pause`` and
    ``resume`` (``sent``: every order, its ``mode`` read from the verified order), and
    the participants this server removed (``removed``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, people: list[Any]) -> None:
        super().__init__(monkeypatch, people)
        self.removed: list[tuple[str, str]] = []

        async def remove_participant(room: str, identity: str, client: Any) -> bool:
            self.removed.append((room, identity))
            return True

        monkeypatch.setattr(service, "remove_participant", remove_participant)

    def perform_rpc(
        self, room: str, identity: str, method: str, payload: str, *, timeout_ms: int
    ) -> str:
        # FakeLiveKit's, without its check of a pending Guidance row (a takeover's order
        # ids are "<takeover id>:pause" and "…:resume").
        received = signing.receive(
            payload, room=room, identity=identity, api_secret=self.secret, api_key=KEY,
            seen=self.applied,
        )  # fmt: skip
        self.sent.append({"room": room, "identity": identity, "order": received.order})
        if self.fail is not None:
            raise self.fail
        if self.answer is not None and received.order is not None:
            return self.answer(received.order.id)
        return received.answer

    @property
    def modes(self) -> list[str]:
        return [sent["order"].mode for sent in self.sent]


def takeover_of(conversation: Conversation | str) -> str:
    target = conversation.pk if isinstance(conversation, Conversation) else conversation
    return f"/core/conversations/{target}/takeover"


@pytest.fixture
def agent_room(monkeypatch: pytest.MonkeyPatch) -> AgentRoom:
    return AgentRoom(monkeypatch, [person("caller"), person(AGENT, api.ParticipantInfo.Kind.AGENT)])


def takeover(
    client: Client,
    world: World,
    method: str = "post",
    credential: str = "pat_supervisor",
    body: Any = None,
    *,
    call: Conversation | str | None = None,
    **extra: Any,
) -> Any:
    """``method`` on the call's takeover with the world's ``credential`` (a secret's name)."""
    target = call if call is not None else world.conversations["in_progress"]
    org = str(world.org.pk) if credential.startswith("pat_") else None
    path = takeover_of(target)
    return send(client, method, path, world.secrets[credential], body, org=org, **extra)


def pat_label(world: World, role: str = "supervisor") -> str:
    """How the audit names the holder of the world's PAT of ``role`` (as guidance's author)."""
    return f"PAT {world.users[role].listen_pats.get(name='all')}"


def grants_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_aud": False})


# --- taking over -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_supervisor_takes_over_with_a_visible_microphone_only_token(
    client: Client, world: World, agent_room: AgentRoom
) -> None:
    response = takeover(client, world)
    assert response.status_code == 201, response.content
    body = response.json()
    validate("TakeoverToken", body)
    assert set(body) == {"id", "url", "token", "room_name", "expires_at"}
    assert response["Cache-Control"] == "no-store"
    assert (body["url"], body["room_name"]) == ("ws://127.0.0.1:7880", "room-in_progress")
    claims = grants_of(body["token"])
    assert claims["sub"] == f"{IDENTITY_PREFIX}{body['id']}" and claims["iss"] == KEY
    assert claims["name"] == "supervisor"  # a PAT's holder: the person (no full name here)
    assert json.loads(claims["metadata"]) == {"takeover": True}
    assert claims["video"] == {
        "roomJoin": True,
        "room": "room-in_progress",
        "canPublish": True,
        "canSubscribe": True,
        "canPublishData": False,
        "canPublishSources": ["microphone"],
        "canUpdateOwnMetadata": False,
        "hidden": False,
    }
    assert body["expires_at"].endswith("Z")
    assert time.time() + 280 < claims["exp"] <= time.time() + 300  # TAKEOVER_TOKEN_TTL
    # The pause went to the agent, confirmed, before the answer.
    assert agent_room.modes == ["pause"]
    assert agent_room.sent[0]["identity"] == AGENT
    row = Takeover.objects.get(pk=body["id"])
    assert row.user == world.users["supervisor"] and row.personal_access_token is not None
    assert (row.agent_identity, row.ended_at) == (AGENT, None)
    assert int(row.expires_at.timestamp()) == claims["exp"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("secret", "status"),
    [
        *((secret, 201) for secret in ALLOWED),
        *((secret, 403) for secret in REFUSED),  # asked for every scope, cut to their role
        ("pat_supervisor_read_only", 403),  # the supervisor's read-only PAT
        ("ak_no_scope", 403),  # conversations:read only
        ("ak_read_sensitive", 403),
        ("ak_manage", 403),  # manage is not take_over
    ],
)
def test_who_may_take_over(
    client: Client, world: World, agent_room: AgentRoom, secret: str, status: int
) -> None:
    for method in ("post", "get", "delete"):
        response = takeover(client, world, method, secret)
        if status == 403:
            assert_error(response, 403, "insufficient_scope")
            assert response.json()["error"]["message"] == NEEDS
    if status == 201:
        assert takeover(client, world, "post", secret).status_code == 201
    else:
        assert not Takeover.objects.exists() and agent_room.sent == []


@pytest.mark.django_db
def test_a_take_over_key_and_a_take_over_only_pat_take_over(
    client: Client, world: World, agent_room: AgentRoom
) -> None:
    world.secrets["ak_take_over"] = issue_api_key(world.org, "desk", [Scope.TAKE_OVER])[1]
    response = takeover(client, world, credential="ak_take_over")
    assert response.status_code == 201, response.content
    assert grants_of(response.json()["token"])["name"] == "desk"
    takeover(client, world, "delete", "ak_take_over")
    # A PAT asking for take_over only: still a supervisor's right on their team's call.
    world.secrets["pat_take_over"] = issue_pat(world.users["supervisor"], "t", [Scope.TAKE_OVER])[1]
    assert takeover(client, world, credential="pat_take_over").status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ("{not json", "application/json", 400, "invalid_json"),
        ("[]", "application/json", 400, "invalid_json"),
        ({"mode": "pause"}, "application/json", 400, "unknown_field"),
        ("{}", "text/plain", 415, "unsupported_media_type"),
        ("x" * (64 * 1024 + 1), "application/json", 413, "payload_too_large"),
    ],
)
def test_the_post_takes_no_fields(
    client: Client,
    world: World,
    agent_room: AgentRoom,
    body: Any,
    content_type: str,
    status: int,
    code: str,
) -> None:
    response = takeover(client, world, body=body, CONTENT_TYPE=content_type)
    assert_error(response, status, code)
    if code == "unknown_field":
        assert "mode" in response.json()["error"]["message"]
    assert agent_room.sent == [] and not Takeover.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("body", [None, {}])
def test_no_body_or_an_empty_object(
    client: Client, world: World, agent_room: AgentRoom, body: Any
) -> None:
    assert takeover(client, world, body=body).status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("call", "status", "code"),
    [
        ("completed", 409, "conversation_not_active"),
        ("no_room", 409, "agent_not_present"),
        ("other_team", 404, "conversation_not_found"),  # the supervisor's PAT cannot see it
        ("other_org", 404, "conversation_not_found"),
        ("unknown", 404, "conversation_not_found"),
        ("not-a-uuid", 404, "conversation_not_found"),
    ],
)
def test_calls_that_cannot_be_taken_over(
    client: Client, world: World, agent_room: AgentRoom, call: str, status: int, code: str
) -> None:
    target = {
        "unknown": "00000000-0000-4000-8000-000000000000",
        "not-a-uuid": "not-a-uuid",
    }.get(call) or world.conversations[call]
    assert_error(takeover(client, world, call=target), status, code)
    if status == 404:  # nothing to read or hand back either
        assert_error(takeover(client, world, "get", call=target), 404, code)
        assert_error(takeover(client, world, "delete", call=target), 404, code)
    assert agent_room.sent == [] and not Takeover.objects.exists()


@pytest.mark.django_db
def test_another_organizations_key_gets_404(
    client: Client, world: World, agent_room: AgentRoom
) -> None:
    other = issue_api_key(world.other_org, "theirs", [Scope.TAKE_OVER])[1]
    path = takeover_of(world.conversations["in_progress"])
    assert_error(send(client, "post", path, other), 404, "conversation_not_found")
    # And an outsider's PAT naming our organization is no member of it.
    outsider = takeover(client, world, credential="pat_outsider")
    assert_error(outsider, 403, "not_a_member")


@pytest.mark.django_db
def test_no_agent_in_the_room_is_409(
    client: Client, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    AgentRoom(monkeypatch, [person("caller")])
    assert_error(takeover(client, world), 409, "agent_not_present")
    assert not Takeover.objects.exists()


@pytest.mark.django_db
def test_without_livekit_the_answer_is_a_documented_409(client: Client, world: World) -> None:
    """No fake: nothing listens where the test settings point LiveKit (as in the fuzz test)."""
    response = takeover(client, world)
    assert_error(response, 409, "agent_not_present")
    assert "LiveKit could not be asked" in response.json()["error"]["message"]
    assert not Takeover.objects.exists()


@pytest.mark.django_db
def test_an_agent_that_does_not_confirm_its_pause_is_502_and_nothing_is_held(
    client: Client, world: World, agent_room: AgentRoom
) -> None:
    agent_room.fail = service.RpcFailed("no answer within 5000 ms")
    response = takeover(client, world)
    assert_error(response, 502, "takeover_not_confirmed")
    assert "no answer within 5000 ms" in response.json()["error"]["message"]
    row = Takeover.objects.get()  # on record, ended
    assert row.ended_by == TakeoverEnd.NOT_PAUSED and row.ended_at is not None
    assert_error(takeover(client, world, "get"), 404, "takeover_not_found")
    # A resume all the same: a pause that landed after the 5 s is undone.
    assert agent_room.modes == ["pause", "resume"]


# --- one holder at a time, and renewal ----------------------------------------------------


@pytest.mark.django_db
def test_a_second_holder_is_409_naming_the_first(
    client: Client, world: World, agent_room: AgentRoom
) -> None:
    first = takeover(client, world, credential="pat_supervisor")
    assert first.status_code == 201, first.content
    second = takeover(client, world, credential="pat_admin")
    assert_error(second, 409, "already_taken_over")
    assert f"Taken over by {pat_label(world)} since" in second.json()["error"]["message"]
    assert Takeover.objects.held().get().pk == Takeover.objects.get().pk
    assert agent_room.modes == ["pause"]  # paused once


@pytest.mark.django_db
def test_the_holder_renews_same_id_fresh_token(
    client: Client, world: World, agent_room: AgentRoom, settings: Any
) -> None:
    from tests.support.world import TEST_LISTEN_SETTINGS

    first = takeover(client, world).json()
    # A longer TTL: the renewal's exp is later even within the same second.
    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, "TAKEOVER_TOKEN_TTL": 600}
    renewed = takeover(client, world)
    assert renewed.status_code == 200, renewed.content
    validate("TakeoverToken", renewed.json())
    again = renewed.json()
    assert again["id"] == first["id"] and again["token"] != first["token"]
    assert again["expires_at"] > first["expires_at"]
    assert grants_of(again["token"])["sub"] == grants_of(first["token"])["sub"]
    assert Takeover.objects.count() == 1 and agent_room.modes == ["pause"]  # not paused again
    # The same person through another PAT is the same holder.
    world.secrets["pat_second"] = issue_pat(world.users["supervisor"], "2", [Scope.TAKE_OVER])[1]
    assert takeover(client, world, credential="pat_second").json()["id"] == first["id"]


@pytest.mark.django_db
def test_two_api_keys_are_two_holders(client: Client, world: World, agent_room: AgentRoom) -> None:
    for name in ("one", "two"):
        world.secrets[name] = issue_api_key(world.org, name, [Scope.TAKE_OVER])[1]
    assert takeover(client, world, credential="one").status_code == 201
    refused = takeover(client, world, credential="two")
    assert_error(refused, 409, "already_taken_over")
    assert "API key one" in refused.json()["error"]["message"]


# --- reading it, and handing back ----------------------------------------------------------


@pytest.mark.django_db
def test_get_answers_the_held_takeover_then_delete_hands_back(
    client: Client, world: World, agent_room: AgentRoom
) -> None:
    assert_error(takeover(client, world, "get"), 404, "takeover_not_found")
    assert_error(takeover(client, world, "delete"), 404, "takeover_not_found")
    taken = takeover(client, world).json()

    held = takeover(client, world, "get", "pat_admin")  # anyone who may take it over
    assert held.status_code == 200, held.content
    assert held["Cache-Control"] == "no-store"
    state = held.json()
    validate("Takeover", state)
    assert (state["id"], state["holder"], state["ended_at"], state["ended_by"]) == (
        taken["id"], pat_label(world), None, None,
    )  # fmt: skip
    assert state["expires_at"] == taken["expires_at"] and state["joined_at"] is None

    handed = takeover(client, world, "delete")
    assert handed.status_code == 200, handed.content
    ended = handed.json()
    validate("Takeover", ended)
    assert (ended["id"], ended["ended_by"]) == (taken["id"], TakeoverEnd.HANDED_BACK)
    assert ended["ended_at"].endswith("Z") and ended["resumed_at"] is not None
    assert ended["resume_error"] == ""
    # The supervisor left the room, the agent resumed (told what was said meanwhile).
    assert agent_room.removed == [("room-in_progress", f"{IDENTITY_PREFIX}{taken['id']}")]
    assert agent_room.modes == ["pause", "resume"]
    assert "took this call over from you" in agent_room.sent[1]["order"].text

    assert_error(takeover(client, world, "get"), 404, "takeover_not_found")
    assert_error(takeover(client, world, "delete"), 404, "takeover_not_found")
    # Free again: the next takeover is a new one.
    again = takeover(client, world, credential="pat_admin")
    assert again.status_code == 201 and again.json()["id"] != taken["id"]


@pytest.mark.django_db
def test_anyone_who_may_take_over_may_hand_back(
    client: Client, world: World, agent_room: AgentRoom
) -> None:
    taken = takeover(client, world, credential="pat_supervisor").json()
    assert_error(takeover(client, world, "delete", "pat_qa"), 403, "insufficient_scope")
    handed = takeover(client, world, "delete", "pat_admin")  # an admin ends a forgotten one
    assert handed.status_code == 200, handed.content
    assert (handed.json()["id"], handed.json()["holder"]) == (taken["id"], pat_label(world))


@pytest.mark.django_db
def test_an_agent_that_does_not_resume_is_on_record(
    client: Client, world: World, agent_room: AgentRoom
) -> None:
    takeover(client, world)
    agent_room.fail = service.RpcFailed("RpcError 1400: Method not supported at destination")
    handed = takeover(client, world, "delete")
    assert handed.status_code == 200, handed.content  # handed back all the same
    assert handed.json()["resumed_at"] is None
    assert "Method not supported" in handed.json()["resume_error"]


@pytest.mark.django_db
def test_other_methods_are_405(client: Client, world: World) -> None:
    response = takeover(client, world, "put", body={})
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET, POST, DELETE"


@pytest.mark.django_db
def test_writes_count_per_credential_and_reads_against_the_read_limit(
    client: Client, world: World, agent_room: AgentRoom, settings: Any
) -> None:
    from tests.support.world import TEST_LISTEN_SETTINGS

    settings.ANYREACH_LISTEN = {
        **TEST_LISTEN_SETTINGS,
        "RATE_LIMIT_REQUESTS": 2,
        "READ_RATE_LIMIT_REQUESTS": 3,
    }
    assert takeover(client, world).status_code == 201
    assert takeover(client, world).status_code == 200  # the renewal counts too
    limited = takeover(client, world)
    assert_error(limited, 429, "rate_limited")
    assert int(limited["Retry-After"]) >= 1
    assert_error(takeover(client, world, "delete"), 429, "rate_limited")  # a write
    for _ in range(3):
        assert takeover(client, world, "get").status_code == 200
    assert_error(takeover(client, world, "get"), 429, "rate_limited")
    # Another credential's own limit.
    assert takeover(client, world, "delete", "pat_admin").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_host_project_with_atomic_requests_still_takes_over(
    client: Client, world: World, agent_room: AgentRoom, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The view is non-atomic: the row commits before the pause goes out.
    committed: list[bool] = []
    rpc = agent_room.perform_rpc

    def seen(room: str, identity: str, method: str, payload: str, *, timeout_ms: int) -> str:
        committed.append(not connection.in_atomic_block and Takeover.objects.held().exists())
        return rpc(room, identity, method, payload, timeout_ms=timeout_ms)

    monkeypatch.setattr(service, "perform_rpc", seen)
    monkeypatch.setitem(connections.settings[DEFAULT_DB_ALIAS], "ATOMIC_REQUESTS", True)
    assert takeover(client, world).status_code == 201
    assert takeover(client, world, "delete").status_code == 200
    assert committed == [True, False]  # paused while held; resumed once ended
    assert Takeover.objects.get().ended_by == TakeoverEnd.HANDED_BACK


# --- two holders at once, on PostgreSQL -----------------------------------------------------


def test_two_holders_at_once_on_postgresql_one_201_one_409() -> None:
    from tests.support.datastores import postgres_server
    from tests.support.processes import run_manage

    with postgres_server() as url:
        env = {
            "DJANGO_SETTINGS_MODULE": "tests.support.load_settings",
            "DATABASE_URL": url,
            "DEBUG": "0",
            "SECRET_KEY": "takeover-race-" + "k" * 40,
            "ALLOWED_HOSTS": "testserver",  # Django's test client, in the shell
            "CREDENTIAL_HASH_KEY": "h" * 40,
            "LIVEKIT_URL": "ws://127.0.0.1:9",  # never called: the fake answers
            "LIVEKIT_API_KEY": KEY,
            "LIVEKIT_API_SECRET": SECRET,  # the fake agent verifies with it
        }
        run_manage(env, "migrate", "-v0")
        code = "from tests.api.test_views_takeover import race; race()"
        out = run_manage(env, "shell", "-c", code)
    outcome = json.loads(out.strip().splitlines()[-1])
    assert sorted(outcome["statuses"]) == [201, 409], outcome
    assert outcome["codes"] == ["already_taken_over"], outcome
    assert outcome["waiting_on_the_lock"] == 2, outcome  # both queued on the call's row
    assert outcome["held"] == 1 and outcome["rows"] == 1, outcome
    assert outcome["pauses"] == 1, outcome


RACE_WAIT = 15.0  # seconds: deadline for each step of the race


def _waiting_on_locks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # a fresh look each time
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])


def race() -> None:
    """Run inside a server's database (``manage.py shell``, PostgreSQL): two API keys POST
    a takeover of one call at once, with Django's test client on two threads (two real
    connections). Both are held just before taking the call's row lock, while this
    thread holds it, until both wait on it; then it is released. Prints JSON."""
    import uuid

    from django.db import transaction

    from anyreach_listen.models import ConversationStatus, Organization

    slug = f"race-{uuid.uuid4().hex[:8]}"
    org = Organization.objects.create(name=slug, slug=slug)
    call = Conversation.objects.create(
        organization=org, status=ConversationStatus.IN_PROGRESS, livekit_room=f"room-{slug}"
    )
    keys = [issue_api_key(org, name, [Scope.TAKE_OVER])[1] for name in ("first", "second")]
    arrived = threading.Semaphore(0)
    go = threading.Event()
    answers: list[tuple[int, str]] = []

    with pytest.MonkeyPatch.context() as patch:
        room = AgentRoom(patch, [person(AGENT, api.ParticipantInfo.Kind.AGENT)])

        async def participants(name: str, client: Any = None, **kwargs: Any) -> list[Any]:
            # Asked once per POST, after its renewal check and before its takeover's
            # transaction: each waits here until this thread holds the call's row.
            arrived.release()
            go.wait(RACE_WAIT)
            return room.people

        patch.setattr(service, "participants", participants)

        def post(secret: str) -> None:
            try:
                response = send(Client(), "post", takeover_of(call), secret)
                answers.append((response.status_code, response.content.decode()))
            finally:
                connection.close()

        threads = [threading.Thread(target=post, args=(key,)) for key in keys]
        for thread in threads:
            thread.start()
        came = all(arrived.acquire(timeout=RACE_WAIT) for _ in threads)
        assert came, f"a POST never arrived: {answers}"
        waiting = 0
        with transaction.atomic():
            list(Conversation.objects.select_for_update().filter(pk=call.pk).values("pk"))
            go.set()
            deadline = time.monotonic() + RACE_WAIT
            while waiting < 2 and time.monotonic() < deadline:
                waiting = _waiting_on_locks()
                time.sleep(0.01)
        for thread in threads:
            thread.join(RACE_WAIT)
        pauses = room.modes.count("pause")

    codes = [json.loads(body)["error"]["code"] for status, body in answers if status != 201]
    print(
        json.dumps(
            {
                "statuses": [status for status, _ in answers],
                "codes": codes,
                "waiting_on_the_lock": waiting,
                "held": Takeover.objects.held().filter(conversation=call).count(),
                "rows": Takeover.objects.filter(conversation=call).count(),
                "pauses": pauses,
            }
        )
    )
