"""api/views.py: the transcript push and read endpoints, the alerts list and the alert-rule
endpoints (scopes and PATs as tables, strict bodies, 409 once closed, the read audit)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from openapi_schema_validator import OAS31Validator

from anyreach_listen import alerts
from anyreach_listen.api.openapi import build_document
from anyreach_listen.models import AlertRule, Conversation, TranscriptRead, TranscriptSegment
from tests.support.api import call as send
from tests.support.world import World

SCHEMAS = build_document()["components"]["schemas"]
RULES = "/core/alert-rules"


def transcript_of(conversation: Conversation) -> str:
    return f"/core/conversations/{conversation.pk}/transcript"


def validate(name: str, body: Any) -> None:
    """``body`` against a schema of the document (its $refs resolved there)."""
    OAS31Validator({**SCHEMAS[name], "components": {"schemas": SCHEMAS}}).validate(body)


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    validate("Error", response.json())


def segment(segment_id: str, text: str, final: bool = True, role: str = "user") -> dict[str, Any]:
    return {"id": segment_id, "role": role, "text": text, "final": final}


SCRIPT = [
    segment("a1", "Thanks for calling Acme, this is Ava.", role="agent"),
    segment("u1", "Hi, I was charged", final=False),
    segment("u1", "Hi, I was charged twice for my order last week."),
    segment("a2", "I'm sorry to hear that", final=False, role="agent"),
]


def push(client: Client, world: World, call: Conversation, segments: list[Any]) -> Any:
    return send(
        client, "post", transcript_of(call), world.secrets["ak_manage"], {"segments": segments}
    )


def test_push_then_read_in_spoken_order(client: Client, world: World) -> None:
    call = world.conversations["in_progress"]
    response = push(client, world, call, SCRIPT)
    assert response.status_code == 200, response.content
    validate("TranscriptPushResult", response.json())
    assert response.json() == {"recorded": 4, "unchanged": 0, "alerts": 0}
    assert response["Cache-Control"] == "no-store"

    read = send(client, "get", transcript_of(call), world.secrets["ak_read_sensitive"])
    assert read.status_code == 200, read.content
    body = read.json()
    validate("Transcript", body)
    assert read["Cache-Control"] == "no-store"
    assert body["complete"] is False
    assert [(s["id"], s["role"], s["text"], s["final"]) for s in body["segments"]] == [
        ("a1", "agent", "Thanks for calling Acme, this is Ava.", True),
        ("u1", "user", "Hi, I was charged twice for my order last week.", True),
        ("a2", "agent", "I'm sorry to hear that", False),
    ]
    assert all(s["at"].endswith("Z") for s in body["segments"])


def test_push_is_idempotent_by_segment_id(client: Client, world: World) -> None:
    call = world.conversations["in_progress"]
    push(client, world, call, SCRIPT)
    again = push(client, world, call, SCRIPT)
    assert again.json() == {"recorded": 0, "unchanged": 4, "alerts": 0}
    assert TranscriptSegment.objects.filter(conversation=call).count() == 3


def test_a_completed_call_is_complete(client: Client, world: World) -> None:
    call = world.conversations["completed"]
    read = send(client, "get", transcript_of(call), world.secrets["ak_manage"])
    assert read.json() == {"segments": [], "complete": True, "next": None}


def test_a_call_that_ended_long_ago_refuses_segments(client: Client, world: World) -> None:
    call = world.conversations["completed"]
    ended = timezone.now() - dt.timedelta(seconds=301)
    Conversation.objects.filter(pk=call.pk).update(ended_at=ended)
    assert_error(push(client, world, call, SCRIPT[:1]), 409, "transcript_closed")
    Conversation.objects.filter(pk=call.pk).update(ended_at=timezone.now())
    assert push(client, world, call, SCRIPT[:1]).status_code == 200  # late words still fit


@pytest.mark.parametrize(
    ("body", "code", "named"),
    [
        ("{not json", "invalid_json", ""),
        (
            '{"segments": [{"id": "a", "role": "user", "text": NaN, "final": true}]}',
            "invalid_json",
            "",
        ),
        ("[]", "invalid_json", ""),
        ({}, "invalid_field", "segments"),
        ({"segments": "a1"}, "invalid_field", "segments"),
        ({"segments": [], "extra": 1}, "unknown_field", "extra"),
        ({"segments": ["a1"]}, "invalid_field", "segments[0]"),
        ({"segments": [{"id": "a1", "role": "user", "text": "x"}]}, "invalid_field", "final"),
        ({"segments": [{**segment("a1", "x"), "speaker": "Ava"}]}, "unknown_field", "speaker"),
        ({"segments": [{**segment("a1", "x"), "final": "true"}]}, "invalid_field", "final"),
        ({"segments": [{**segment("a1", "x"), "final": 1}]}, "invalid_field", "final"),
        ({"segments": [{**segment("a1", "x"), "role": "bot"}]}, "invalid_field", "role"),
        ({"segments": [{**segment("a1", "x"), "role": None}]}, "invalid_field", "role"),
        ({"segments": [segment("", "x")]}, "invalid_field", ".id"),
        ({"segments": [segment("x" * 201, "x")]}, "invalid_field", ".id"),
        ({"segments": [{**segment("a1", "x"), "id": 7}]}, "invalid_field", ".id"),
        ({"segments": [segment("a1", None)]}, "invalid_field", ".text"),  # type: ignore[arg-type]
        ({"segments": [segment("a1", "x" * 10_001)]}, "invalid_field", ".text"),
        ({"segments": [segment("a1", "nul\x00")]}, "invalid_field", "NUL"),
        ({"segments": [segment("a\x00", "x")]}, "invalid_field", "NUL"),
        ({"segments": [segment(f"s{i}", "x") for i in range(201)]}, "invalid_field", "200"),
        # One bad segment refuses the whole batch, the good one before it included.
        ({"segments": [segment("ok", "fine"), segment("bad", 3)]}, "invalid_field", "segments[1]"),  # type: ignore[arg-type]
    ],
)
def test_malformed_pushes_are_400_and_store_nothing(
    client: Client, world: World, body: Any, code: str, named: str
) -> None:
    call = world.conversations["in_progress"]
    response = send(client, "post", transcript_of(call), world.secrets["ak_manage"], body)
    assert_error(response, 400, code)
    assert named in response.json()["error"]["message"]
    assert not TranscriptSegment.objects.filter(conversation=call).exists()


def test_a_body_over_64_kb_is_413(client: Client, world: World) -> None:
    call = world.conversations["in_progress"]
    big = {"segments": [segment(f"s{i}", "x" * 9000) for i in range(8)]}
    response = send(client, "post", transcript_of(call), world.secrets["ak_manage"], big)
    assert_error(response, 413, "payload_too_large")


# (credential, org header, conversation, status, code)
PUSH_TABLE = [
    ("ak_manage", None, "in_progress", 200, None),
    ("pat_admin", "own", "in_progress", 200, None),
    ("ak_read_sensitive", None, "in_progress", 403, "insufficient_scope"),
    ("pat_supervisor", "own", "in_progress", 403, "insufficient_scope"),  # role: no manage
    ("pat_viewer", "own", "in_progress", 403, "insufficient_scope"),
    ("ak_manage", None, "other_org", 404, "conversation_not_found"),
    ("ak_manage", None, "not-a-uuid", 404, "conversation_not_found"),
    ("pat_admin", None, "in_progress", 400, "missing_organization"),
    (None, None, "in_progress", 401, "missing_credentials"),
]
READ_TABLE = [
    ("ak_manage", None, "in_progress", 200, None),
    ("ak_read_sensitive", None, "in_progress", 200, None),
    ("ak_read_sensitive", None, "other_team", 200, None),  # a key sees its whole organization
    ("ak_no_scope", None, "in_progress", 403, "insufficient_scope"),  # conversations:read only
    ("ak_other_org", None, "in_progress", 404, "conversation_not_found"),
    ("pat_admin", "own", "other_team", 200, None),
    ("pat_supervisor", "own", "in_progress", 200, None),
    ("pat_qa", "own", "in_progress", 200, None),
    ("pat_supervisor", "own", "other_team", 404, "conversation_not_found"),  # not their team
    ("pat_supervisor_read_only", "own", "in_progress", 403, "insufficient_scope"),
    ("pat_viewer", "own", "in_progress", 403, "insufficient_scope"),  # viewers never
    ("pat_outsider", "own", "in_progress", 403, "not_a_member"),
    ("pat_supervisor", None, "in_progress", 400, "missing_organization"),
    ("pat_supervisor", "garbage", "in_progress", 400, "invalid_organization"),
    (None, None, "in_progress", 401, "missing_credentials"),
]


def _request(
    client: Client, world: World, method: str, credential: str | None, org: str | None, target: str
) -> Any:
    secret = world.secrets[credential] if credential else None
    org_header = {None: None, "own": str(world.org.pk), "garbage": "x"}[org]
    conversation_id = world.conversations[target].pk if target in world.conversations else target
    path = f"/core/conversations/{conversation_id}/transcript"
    body = {"segments": [segment("u1", "Hello.")]} if method == "post" else None
    return send(client, method, path, secret, body, org_header)


@pytest.mark.parametrize(("credential", "org", "target", "status", "code"), PUSH_TABLE)
def test_push_access_table(
    client: Client,
    world: World,
    credential: str | None,
    org: str | None,
    target: str,
    status: int,
    code: str | None,
) -> None:
    response = _request(client, world, "post", credential, org, target)
    if code:
        assert_error(response, status, code)
        assert not TranscriptSegment.objects.exists()
    else:
        assert response.status_code == status, response.content
        assert TranscriptSegment.objects.count() == 1


@pytest.mark.parametrize(("credential", "org", "target", "status", "code"), READ_TABLE)
def test_read_access_table(
    client: Client,
    world: World,
    credential: str | None,
    org: str | None,
    target: str,
    status: int,
    code: str | None,
) -> None:
    for name in ("in_progress", "other_team"):
        push(client, world, world.conversations[name], [segment("u1", "My card number is 4417.")])
    response = _request(client, world, "get", credential, org, target)
    if code:
        assert_error(response, status, code)
        assert b"4417" not in response.content
        assert not TranscriptRead.objects.exists()  # refusals are not reads
    else:
        assert response.status_code == status, response.content
        assert response.json()["segments"][0]["text"] == "My card number is 4417."
        assert TranscriptRead.objects.count() == 1


def test_reads_are_audited_with_who_and_how(client: Client, world: World) -> None:
    call = world.conversations["in_progress"]
    send(client, "get", transcript_of(call), world.secrets["ak_read_sensitive"])
    send(client, "get", transcript_of(call), world.secrets["pat_qa"], org=str(world.org.pk))
    send(client, "get", transcript_of(call), world.secrets["pat_qa"], org=str(world.org.pk))
    rows = list(TranscriptRead.objects.filter(conversation=call).order_by("read_at"))
    # The PAT's second read within the hour is the first going on (tests/api/test_views_reads.py).
    assert len(rows) == 2
    key_read, pat_read = rows
    assert key_read.api_key is not None and key_read.api_key.name == "rs"
    assert key_read.user is None and key_read.credential_label.startswith("API key rs")
    assert pat_read.user == world.users["qa"]
    assert pat_read.personal_access_token is not None
    assert pat_read.credential_label.startswith("PAT all")
    assert {r.via for r in rows} == {"api"}
    assert key_read.client_ip == "127.0.0.1"


# --- alert rules and alerts ---------------------------------------------------------------


def test_create_list_and_delete_a_rule(client: Client, world: World) -> None:
    key = world.secrets["ak_manage"]
    created = send(client, "post", RULES, key, {"phrase": "charged twice"})
    assert created.status_code == 201, created.content
    rule = created.json()
    validate("AlertRule", rule)
    assert (rule["phrase"], rule["role"], rule["severity"], rule["team_id"]) == (
        "charged twice",
        "any",
        "warning",
        None,
    )
    assert rule["created_by"].startswith("API key m") and rule["deleted_at"] is None

    body = {
        "phrase": "cancel my account",
        "role": "user",
        "severity": "critical",
        "team_id": str(world.team.pk),
    }
    by_admin = send(client, "post", RULES, world.secrets["pat_admin"], body, str(world.org.pk))
    assert by_admin.status_code == 201, by_admin.content
    assert {k: by_admin.json()[k] for k in body} == body
    assert by_admin.json()["created_by"].startswith("admin (PAT all")
    assert AlertRule.objects.get(pk=by_admin.json()["id"]).created_by == world.users["admin"]

    alerts.create_rule(world.other_org, phrase="not yours")
    listed = send(client, "get", RULES, key)
    assert listed.status_code == 200
    validate("AlertRuleList", listed.json())
    assert [r["phrase"] for r in listed.json()["rules"]] == ["charged twice", "cancel my account"]

    deleted = send(client, "delete", f"{RULES}/{rule['id']}", key)
    assert deleted.status_code == 200, deleted.content
    assert deleted.json()["deleted_at"] is not None
    assert [r["phrase"] for r in send(client, "get", RULES, key).json()["rules"]] == [
        "cancel my account"
    ]
    assert_error(send(client, "delete", f"{RULES}/{rule['id']}", key), 404, "alert_rule_not_found")


def test_rules_of_another_organization_cannot_be_deleted(client: Client, world: World) -> None:
    foreign = alerts.create_rule(world.other_org, phrase="not yours")
    for rule_id in (foreign.pk, "not-a-uuid"):
        response = send(client, "delete", f"{RULES}/{rule_id}", world.secrets["ak_manage"])
        assert_error(response, 404, "alert_rule_not_found")
    foreign.refresh_from_db()
    assert foreign.deleted_at is None


@pytest.mark.parametrize(
    ("body", "status", "code", "named"),
    [
        ({}, 400, "invalid_field", "phrase"),
        ({"phrase": "?!"}, 400, "invalid_field", "phrase"),
        ({"phrase": ""}, 400, "invalid_field", "phrase"),
        ({"phrase": "x" * 201}, 400, "invalid_field", "phrase"),
        ({"phrase": 3}, 400, "invalid_field", "phrase"),
        ({"phrase": "refund", "role": "bot"}, 400, "invalid_field", "role"),
        ({"phrase": "refund", "severity": "high"}, 400, "invalid_field", "severity"),
        ({"phrase": "refund", "colour": "red"}, 400, "unknown_field", "colour"),
        ({"phrase": "refund", "team_id": "not-a-team"}, 400, "invalid_team", ""),
        ("[1]", 400, "invalid_json", ""),
    ],
)
def test_bad_rules_are_refused(
    client: Client, world: World, body: Any, status: int, code: str, named: str
) -> None:
    response = send(client, "post", RULES, world.secrets["ak_manage"], body)
    assert_error(response, status, code)
    assert named in response.json()["error"]["message"]
    assert not AlertRule.objects.exists()


def test_a_team_of_another_organization_is_invalid_team(client: Client, world: World) -> None:
    foreign_team = world.other_org.teams.create(name="Ops")
    body = {"phrase": "refund", "team_id": str(foreign_team.pk)}
    assert_error(send(client, "post", RULES, world.secrets["ak_manage"], body), 400, "invalid_team")


@pytest.mark.parametrize(
    ("credential", "status", "code"),
    [
        ("ak_manage", 200, None),
        ("pat_admin", 200, None),
        ("ak_read_sensitive", 403, "insufficient_scope"),
        ("pat_supervisor", 403, "insufficient_scope"),
        ("pat_viewer", 403, "insufficient_scope"),
    ],
)
def test_rules_need_the_manage_scope(
    client: Client, world: World, credential: str, status: int, code: str | None
) -> None:
    rule = alerts.create_rule(world.org, phrase="refund")
    secret, org = world.secrets[credential], str(world.org.pk)
    answers = [
        send(client, "get", RULES, secret, org=org),
        send(client, "post", RULES, secret, {"phrase": "cancel"}, org),
        send(client, "delete", f"{RULES}/{rule.pk}", secret, org=org),
    ]
    if code:
        for response in answers:
            assert_error(response, status, code)
        assert AlertRule.objects.live().count() == 1
    else:
        assert [r.status_code for r in answers] == [200, 201, 200]


def test_a_push_raises_alerts_listed_for_transcript_readers(client: Client, world: World) -> None:
    call = world.conversations["in_progress"]
    send(client, "post", RULES, world.secrets["ak_manage"], {"phrase": "Charged twice"})
    response = push(client, world, call, SCRIPT)
    assert response.json()["alerts"] == 1
    assert push(client, world, call, SCRIPT).json()["alerts"] == 0  # once per segment

    path = f"/core/conversations/{call.pk}/alerts"
    listed = send(client, "get", path, world.secrets["pat_supervisor"], org=str(world.org.pk))
    assert listed.status_code == 200, listed.content
    validate("AlertList", listed.json())
    (alert,) = listed.json()["alerts"]
    assert (alert["phrase"], alert["severity"], alert["role"], alert["segment_id"]) == (
        "Charged twice",
        "warning",
        "user",
        "u1",
    )
    assert alert["conversation_id"] == str(call.pk)
    assert "order last week" not in listed.content.decode()

    viewer = send(client, "get", path, world.secrets["pat_viewer"], org=str(world.org.pk))
    assert_error(viewer, 403, "insufficient_scope")
    foreign = send(client, "get", path, world.secrets["ak_other_org"])
    assert_error(foreign, 404, "conversation_not_found")


def test_new_paths_answer_405_with_allow(client: Client, world: World) -> None:
    call = world.conversations["in_progress"]
    cases = [
        ("delete", transcript_of(call), "GET, POST"),
        ("post", f"/core/conversations/{call.pk}/alerts", "GET"),
        ("put", RULES, "GET, POST"),
        ("get", f"{RULES}/{call.pk}", "DELETE"),
    ]
    for method, path, allow in cases:
        response = send(client, method, path, world.secrets["ak_manage"])
        assert_error(response, 405, "method_not_allowed")
        assert response["Allow"] == allow
