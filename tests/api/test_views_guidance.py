"""api/views.py: POST and GET /core/conversations/{id}/guidance (scopes and PATs, the strict
body, the answers and errors as documented, the list audited as a transcript read).

LiveKit is faked (tests/assist/test_guidance.py's ``FakeLiveKit``); the real RPC:
tests/e2e/test_guidance_rpc.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import DEFAULT_DB_ALIAS, connections
from django.test import Client
from livekit import api

from anyreach_listen.livekit import service
from anyreach_listen.models import Conversation, Guidance, GuidanceStatus, TranscriptRead
from tests.api.test_views_transcripts import assert_error, validate
from tests.assist.test_guidance import FakeLiveKit, person
from tests.support.api import call as send
from tests.support.world import World

pytestmark = pytest.mark.django_db

SAY = {"mode": "say", "text": "Offer the refund now."}


def guidance_of(conversation: Conversation) -> str:
    return f"/core/conversations/{conversation.pk}/guidance"


@pytest.fixture
def agent_room(monkeypatch: pytest.MonkeyPatch) -> FakeLiveKit:
    return FakeLiveKit(monkeypatch, [person("agent-ava", api.ParticipantInfo.Kind.AGENT)])


def give(
    client: Client, world: World, credential: str = "pat_supervisor", body: Any = SAY, **kw: Any
) -> Any:
    """POST guidance with the world's ``credential`` (a secret's name)."""
    call = kw.pop("call", world.conversations["in_progress"])
    secret = credential
    org = str(world.org.pk) if secret.startswith("pat_") else None
    return send(client, "post", guidance_of(call), world.secrets[secret], body, org=org)


def test_a_supervisor_guides_and_gets_the_delivered_guidance(
    client: Client, world: World, agent_room: FakeLiveKit
) -> None:
    response = give(client, world)
    assert response.status_code == 201, response.content
    body = response.json()
    validate("Guidance", body)
    assert response["Cache-Control"] == "no-store"
    assert {"id", "mode", "text", "status", "author", "created_at", "delivered_at"} <= set(body)
    assert (body["mode"], body["text"], body["status"]) == ("say", SAY["text"], "delivered")
    assert body["author"] == f"PAT {world.users['supervisor'].listen_pats.get(name='all')}"
    assert body["delivered_at"].endswith("Z")
    row = Guidance.objects.get(pk=body["id"])
    assert row.personal_access_token is not None and row.user == world.users["supervisor"]


@pytest.mark.parametrize(
    ("secret", "status"),
    [
        ("pat_admin", 201),
        ("pat_supervisor", 201),
        ("pat_qa", 403),  # QA never guides
        ("pat_viewer", 403),
        ("ak_manage", 403),  # manage is not guide
        ("ak_read_sensitive", 403),
    ],
)
def test_who_may_guide(
    client: Client, world: World, agent_room: FakeLiveKit, secret: str, status: int
) -> None:
    response = give(client, world, secret)
    assert response.status_code == status, response.content
    if status == 403:
        assert_error(response, 403, "insufficient_scope")
        assert response.json()["error"]["message"] == "Needs the conversations:guide scope."


def test_a_guide_key_guides(client: Client, world: World, agent_room: FakeLiveKit) -> None:
    from anyreach_listen.access.credentials import issue_api_key

    _, secret = issue_api_key(world.org, "guide", ["conversations:guide"])
    world.secrets["ak_guide"] = secret
    response = give(client, world, "ak_guide")
    assert response.status_code == 201, response.content
    assert response.json()["author"].startswith("API key guide")


@pytest.mark.parametrize(
    ("body", "code", "named"),
    [
        ("{not json", "invalid_json", ""),
        ("[]", "invalid_json", ""),
        ({}, "invalid_field", "mode and text are required"),
        ({"mode": "say"}, "invalid_field", "text is required"),
        ({**SAY, "urgent": True}, "unknown_field", "urgent"),
        ({**SAY, "mode": "shout"}, "invalid_field", "mode"),
        ({**SAY, "text": ""}, "invalid_field", "text"),
        ({**SAY, "text": " \n"}, "invalid_field", "text"),
        ({**SAY, "text": "x" * 1001}, "invalid_field", "text"),
        ({**SAY, "text": 42}, "invalid_field", "text"),
    ],
)
def test_the_body_is_read_strictly(
    client: Client, world: World, agent_room: FakeLiveKit, body: Any, code: str, named: str
) -> None:
    response = give(client, world, body=body)
    assert_error(response, 400, code)
    assert named in response.json()["error"]["message"]
    assert agent_room.sent == [] and not Guidance.objects.exists()


@pytest.mark.parametrize(
    ("call", "status", "code"),
    [
        ("completed", 409, "conversation_not_active"),
        ("no_room", 409, "agent_not_present"),
        ("other_team", 404, "conversation_not_found"),  # the supervisor's PAT cannot see it
        ("other_org", 404, "conversation_not_found"),
    ],
)
def test_calls_that_cannot_be_guided(
    client: Client, world: World, agent_room: FakeLiveKit, call: str, status: int, code: str
) -> None:
    assert_error(give(client, world, call=world.conversations[call]), status, code)


def test_no_agent_in_the_room_is_409(
    client: Client, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeLiveKit(monkeypatch, [person("caller")])
    assert_error(give(client, world), 409, "agent_not_present")


def test_an_agent_that_does_not_acknowledge_is_502_and_the_row_stays(
    client: Client, world: World, agent_room: FakeLiveKit
) -> None:
    agent_room.fail = service.RpcFailed("no answer within 5000 ms")
    response = give(client, world)
    assert_error(response, 502, "guidance_not_delivered")
    assert "no answer within 5000 ms" in response.json()["error"]["message"]
    listed = send(client, "get", guidance_of(world.conversations["in_progress"]),
                  world.secrets["ak_read_sensitive"])  # fmt: skip
    (row,) = listed.json()["guidance"]
    assert (row["status"], row["reason"]) == (GuidanceStatus.FAILED, "no answer within 5000 ms")


def test_without_livekit_the_answer_is_a_documented_409(client: Client, world: World) -> None:
    """No fake: nothing listens where the test settings point LiveKit (as in the fuzz test)."""
    response = give(client, world)
    assert_error(response, 409, "agent_not_present")
    assert "LiveKit could not be asked" in response.json()["error"]["message"]
    assert not Guidance.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_host_project_with_atomic_requests_still_guides(
    client: Client, world: World, agent_room: FakeLiveKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The view is non-atomic: the audit row commits before the order goes out.
    monkeypatch.setitem(connections.settings[DEFAULT_DB_ALIAS], "ATOMIC_REQUESTS", True)
    response = give(client, world)
    assert response.status_code == 201, response.content
    assert agent_room.seen_pending == [True]
    assert Guidance.objects.get().status == GuidanceStatus.DELIVERED


def test_the_list_is_for_transcript_readers_and_audited(
    client: Client, world: World, agent_room: FakeLiveKit
) -> None:
    call = world.conversations["in_progress"]
    give(client, world)
    give(client, world, body={"mode": "whisper", "text": "Be warmer."})
    assert_error(
        send(client, "get", guidance_of(call), world.secrets["ak_no_scope"]),
        403,
        "insufficient_scope",
    )
    assert not TranscriptRead.objects.exists()
    response = send(client, "get", guidance_of(call), world.secrets["ak_read_sensitive"])
    assert response.status_code == 200, response.content
    validate("GuidanceList", response.json())
    assert [g["mode"] for g in response.json()["guidance"]] == ["say", "whisper"]
    (read,) = TranscriptRead.objects.all()
    assert read.conversation_id == call.pk and read.api_key is not None
    viewer = send(client, "get", guidance_of(call), world.secrets["pat_viewer"],
                  org=str(world.org.pk))  # fmt: skip
    assert_error(viewer, 403, "insufficient_scope")
