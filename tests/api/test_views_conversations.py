"""The conversations REST API: the credential, scope and role table, strict bodies,
forward-only status, idempotent external ids and stable cursor pagination."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from django.test import Client
from openapi_schema_validator import OAS31Validator

from anyreach_listen.access.credentials import issue_api_key
from anyreach_listen.api.openapi import build_document
from anyreach_listen.models import (
    AlertRule,
    Conversation,
    ConversationStatus,
    Team,
    TranscriptSegment,
)
from tests.support.api import call
from tests.support.world import TEST_LISTEN_SETTINGS, World

COLLECTION = "/core/conversations"
SCHEMAS = build_document()["components"]["schemas"]


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    OAS31Validator(SCHEMAS["Error"]).validate(response.json())


def assert_conversation(body: dict[str, Any]) -> None:
    OAS31Validator(SCHEMAS["Conversation"]).validate(body)
    for name in ("started_at", "ended_at", "created_at", "updated_at"):
        assert body[name] is None or body[name].endswith("Z")


@pytest.fixture
def secrets(world: World) -> dict[str, str]:
    """The world's credentials plus a key with no scope at all."""
    return {**world.secrets, "ak_none": issue_api_key(world.org, "nothing", [])[1]}


# (credential, org header, operation, status, code or None)
# Operations: create; list; get / patch of "own" (Support), "sales" (another team of the
# organization) and "foreign" (another organization's) conversations.
TABLE = [
    ("ak_manage", None, "create", 201, None),
    ("ak_manage", None, "list", 200, None),
    ("ak_manage", None, "get_own", 200, None),
    ("ak_manage", None, "get_sales", 200, None),
    ("ak_manage", None, "get_foreign", 404, "conversation_not_found"),
    ("ak_manage", None, "patch_own", 200, None),
    ("ak_manage", None, "patch_foreign", 404, "conversation_not_found"),
    ("ak_read_sensitive", None, "get_own", 200, None),
    ("ak_read_sensitive", None, "create", 403, "insufficient_scope"),
    ("ak_read_sensitive", None, "patch_own", 403, "insufficient_scope"),
    ("ak_no_scope", None, "list", 200, None),  # conversations:read
    ("ak_no_scope", None, "create", 403, "insufficient_scope"),
    ("ak_none", None, "list", 403, "insufficient_scope"),
    ("ak_none", None, "get_own", 403, "insufficient_scope"),
    ("ak_other_org", None, "get_own", 404, "conversation_not_found"),
    ("ak_manage", "other", "list", 403, "organization_mismatch"),
    (None, None, "list", 401, "missing_credentials"),
    ("ak_0123456789ab_" + "x" * 40, None, "create", 401, "invalid_credentials"),
    # PATs: scopes intersected with the owner's role, visibility of the owner's teams.
    ("pat_admin", "own", "create", 201, None),
    ("pat_admin", "own", "get_sales", 200, None),
    ("pat_admin", "own", "patch_own", 200, None),
    ("pat_supervisor", "own", "get_own", 200, None),
    ("pat_supervisor", "own", "get_sales", 404, "conversation_not_found"),
    ("pat_supervisor", "own", "create", 403, "insufficient_scope"),
    ("pat_viewer", "own", "list", 200, None),
    ("pat_viewer", "own", "patch_own", 403, "insufficient_scope"),
    ("pat_supervisor", None, "list", 400, "missing_organization"),
    ("pat_supervisor", "garbage", "list", 400, "invalid_organization"),
    ("pat_outsider", "own", "list", 403, "not_a_member"),
    ("pat_outsider", "other", "get_own", 404, "conversation_not_found"),
]


@pytest.mark.parametrize(("credential", "org", "operation", "status", "code"), TABLE)
def test_access_table(
    client: Client,
    world: World,
    secrets: dict[str, str],
    credential: str | None,
    org: str | None,
    operation: str,
    status: int,
    code: str | None,
) -> None:
    secret = secrets.get(credential, credential) if credential else None
    org_header = {
        None: None,
        "own": str(world.org.pk),
        "other": str(world.other_org.pk),
        "garbage": "x",
    }[org]
    targets = {
        "own": world.conversations["ringing"],
        "sales": world.conversations["other_team"],
        "foreign": world.conversations["other_org"],
    }
    verb, _, target = operation.partition("_")
    if verb == "create":
        response = call(client, "post", COLLECTION, secret, {"caller_label": "x"}, org_header)
    elif verb == "list":
        response = call(client, "get", COLLECTION, secret, org=org_header)
    else:
        path = f"{COLLECTION}/{targets[target].pk}"
        body = {"status": "in_progress"} if verb == "patch" else None
        response = call(client, verb, path, secret, body, org_header)
    if code is not None:
        assert_error(response, status, code)
        return
    assert response.status_code == status, response.content
    if verb == "list":
        OAS31Validator(SCHEMAS["Conversation"]).validate(response.json()["results"][0])
    else:
        assert_conversation(response.json())


def test_create_with_every_field(client: Client, world: World) -> None:
    body = {
        "room_name": "call-abc",
        "status": "ringing",
        "team_id": str(world.team.pk),
        "agent_label": "Ava",
        "caller_label": "+1 555 0100",
        "metadata": {"campaign": "spring"},
        "external_id": "ext-9",
    }
    response = call(client, "post", COLLECTION, world.secrets["ak_manage"], body)
    assert response.status_code == 201
    created = response.json()
    assert_conversation(created)
    assert {k: created[k] for k in body if k != "team_id"} == {
        k: v for k, v in body.items() if k != "team_id"
    }
    assert created["team_id"] == str(world.team.pk)
    assert created["organization_id"] == str(world.org.pk) and created["started_at"] is None
    again = call(client, "post", COLLECTION, world.secrets["ak_manage"], {"external_id": "ext-9"})
    assert again.status_code == 200 and again.json() == created


@pytest.mark.parametrize(
    ("body", "status", "code", "named"),
    [
        ("{not json", 400, "invalid_json", ""),
        ("[1, 2]", 400, "invalid_json", ""),
        ({"agent_label": "x", "colour": "red"}, 400, "unknown_field", "colour"),
        ({"agent_label": "x" * 201}, 400, "invalid_field", "agent_label"),
        ({"caller_label": 42}, 400, "invalid_field", "caller_label"),
        ({"status": "completed"}, 400, "invalid_field", "status"),
        ({"metadata": ["not", "an", "object"]}, 400, "invalid_field", "metadata"),
        ({"metadata": {"blob": "x" * 17000}}, 400, "invalid_field", "metadata"),
        ({"team_id": 7}, 400, "invalid_field", "team_id"),
        ({"team_id": "not-a-team"}, 400, "invalid_team", ""),
        ({"room_name": "room-in_progress"}, 409, "room_in_use", ""),
        ({"metadata": {"blob": "x" * 70000}}, 413, "payload_too_large", ""),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    client: Client, world: World, body: Any, status: int, code: str, named: str
) -> None:
    before = Conversation.objects.count()
    response = call(client, "post", COLLECTION, world.secrets["ak_manage"], body)
    assert_error(response, status, code)
    assert named in response.json()["error"]["message"]
    assert Conversation.objects.count() == before


def test_a_team_of_another_organization_is_invalid(client: Client, world: World) -> None:
    foreign = Team.objects.create(organization=world.other_org, name="Ops")
    response = call(
        client, "post", COLLECTION, world.secrets["ak_manage"], {"team_id": str(foreign.pk)}
    )
    assert_error(response, 400, "invalid_team")


def test_patch_moves_forward_and_ends_the_call(client: Client, world: World) -> None:
    target = f"{COLLECTION}/{world.conversations['triggered'].pk}"
    key = world.secrets["ak_manage"]
    ringing = call(client, "patch", target, key, {"status": "ringing", "caller_label": "Bo"})
    assert ringing.status_code == 200 and ringing.json()["caller_label"] == "Bo"
    back = call(client, "patch", target, key, {"status": "triggered"})
    assert_error(back, 409, "invalid_transition")
    assert "ringing" in back.json()["error"]["message"]
    done = call(client, "patch", target, key, {"status": "canceled"})
    assert done.json()["status"] == "canceled" and done.json()["ended_at"]
    assert_error(call(client, "patch", target, key, {"room_name": "x"}), 409, "invalid_transition")
    assert_error(call(client, "patch", target, key, {"nope": 1}), 400, "unknown_field")


def test_room_name_can_be_set_while_none_is(client: Client, world: World) -> None:
    target = f"{COLLECTION}/{world.conversations['no_room'].pk}"
    key = world.secrets["ak_manage"]
    assert call(client, "patch", target, key, {"room_name": "new"}).json()["room_name"] == "new"
    assert_error(
        call(client, "patch", target, key, {"room_name": "newer"}), 409, "invalid_transition"
    )


def test_list_filters(client: Client, world: World) -> None:
    key = world.secrets["ak_manage"]

    def ids(query: str) -> set[str]:
        response = call(client, "get", f"{COLLECTION}?{query}", key)
        assert response.status_code == 200, response.content
        return {c["id"] for c in response.json()["results"]}

    active = {str(c.pk) for c in Conversation.objects.active().filter(organization=world.org)}
    assert ids("status=active") == active
    assert ids("status=failed") == {str(world.conversations["failed"].pk)}
    assert ids(f"team_id={world.other_team.pk}") == {str(world.conversations["other_team"].pk)}
    Conversation.objects.filter(pk=world.conversations["ringing"].pk).update(external_id="e-1")
    assert ids("external_id=e-1") == {str(world.conversations["ringing"].pk)}
    assert_error(call(client, "get", f"{COLLECTION}?status=busy", key), 400, "invalid_field")
    assert_error(call(client, "get", f"{COLLECTION}?limit=201", key), 400, "invalid_field")
    assert_error(call(client, "get", f"{COLLECTION}?cursor=zzz", key), 400, "invalid_field")


def test_pagination_is_newest_first_and_stable_under_inserts(
    client: Client, world: World, settings: Any
) -> None:
    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, "PAGE_SIZE": 3}
    key = world.secrets["ak_manage"]
    expected = [
        str(c.pk)
        for c in Conversation.objects.filter(organization=world.org).order_by("-created_at", "-id")
    ]
    seen: list[str] = []
    url: str | None = COLLECTION
    while url:
        page = call(client, "get", url, key).json()
        assert len(page["results"]) <= 3
        seen += [c["id"] for c in page["results"]]
        # A call registered between two pages neither shifts nor repeats the rest.
        Conversation.objects.create(organization=world.org, status=ConversationStatus.RINGING)
        url = page["next"]
    assert seen == expected


def test_writes_are_rate_limited_per_credential(
    client: Client, world: World, settings: Any
) -> None:
    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, "RATE_LIMIT_REQUESTS": 2}
    key = world.secrets["ak_manage"]
    for _ in range(2):
        assert call(client, "post", COLLECTION, key, {}).status_code == 201
    limited = call(client, "post", COLLECTION, key, {})
    assert_error(limited, 429, "rate_limited")
    assert int(limited["Retry-After"]) >= 1
    assert call(client, "get", COLLECTION, key).status_code == 200  # reads are not limited


def _cursor_of(created: str) -> str:
    position = json.dumps([created, "9faa0846-6a93-4a60-adc2-a23ffe0113d4"]).encode()
    return base64.urlsafe_b64encode(position).decode()


# Malformed input that once reached the database or int() and was answered 500
# (or, for NaN, a misleading room_in_use): each gets its documented 400 now.
MALFORMED: list[tuple[str, str, str | None, dict[str, str], str]] = [
    ("get", COLLECTION + "?limit=%C2%B2", None, {}, "invalid_field"),  # "²".isdigit()
    ("get", COLLECTION + "?cursor=" + _cursor_of("0001-01-01T00:00:00+14:00"), None, {},
     "invalid_field"),  # before year 1 in UTC
    ("get", COLLECTION + "?cursor=" + _cursor_of("2026-01-01T00:00:00"), None, {},
     "invalid_field"),  # naive: not one we gave out
    ("get", COLLECTION + "?external_id=a%00b", None, {}, "invalid_field"),  # PostgreSQL: NUL
    ("post", COLLECTION, '{"agent_label": "a\\ud800b"}', {}, "invalid_field"),  # not UTF-8
    ("post", COLLECTION, '{"external_id": "a\\u0000b"}', {}, "invalid_field"),
    ("post", COLLECTION, '{"metadata": {"k\\udc00": 1}}', {}, "invalid_field"),
    ("post", COLLECTION, '{"metadata": {"k": "\\u0000"}}', {}, "invalid_field"),
    ("post", COLLECTION, '{"metadata": ' + '{"a": ' * 40 + "1" + "}" * 41, {}, "invalid_field"),
    ("post", COLLECTION, '{"metadata": {"a": NaN}}', {}, "invalid_json"),
    ("post", COLLECTION, '{"metadata": {"a": Infinity}}', {}, "invalid_json"),
    ("post", COLLECTION, "[" * 30_000 + "]" * 30_000, {}, "invalid_json"),  # RecursionError
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "extra", "code"), MALFORMED)
def test_malformed_input_is_a_documented_400_and_changes_nothing(
    client: Client,
    world: World,
    method: str,
    path: str,
    body: str | None,
    extra: dict[str, str],
    code: str,
) -> None:
    before = Conversation.objects.count()
    response = call(client, method, path, world.secrets["ak_manage"], body, **extra)
    assert_error(response, 400, code)
    assert Conversation.objects.count() == before


def test_a_content_length_of_unicode_digits_is_not_a_server_error(
    client: Client, world: World
) -> None:
    # "²".isdigit() is true but int("²") raises: the header is no size, the body is read.
    response = call(client, "post", COLLECTION, world.secrets["ak_manage"], {},
                    HTTP_CONTENT_LENGTH="²")  # fmt: skip
    assert response.status_code == 201, response.content


# Every endpoint that reads a body (payloads.read_object) and a body it must refuse.
WRITES = [
    ("post", COLLECTION, lambda w: None),
    ("patch", COLLECTION + "/{}", lambda w: w.conversations["ringing"].pk),
    ("post", COLLECTION + "/{}/transcript", lambda w: w.conversations["in_progress"].pk),
    ("post", "/core/alert-rules", lambda w: None),
]
NOT_JSON = [
    ("text/plain", '{"agent_label": "x"}', "text/plain"),
    ("text/plain; charset=utf-8", '{"agent_label": "x"}', "text/plain"),
    ("application/x-www-form-urlencoded", "agent_label=x", "application/x-www-form-urlencoded"),
    ("application/merge-patch+json", '{"agent_label": "x"}', "application/merge-patch+json"),
    (None, '{"agent_label": "x"}', "no Content-Type"),
]


@pytest.mark.parametrize(("method", "path", "target"), WRITES)
@pytest.mark.parametrize(("content_type", "body", "named"), NOT_JSON)
def test_a_body_not_sent_as_application_json_is_415_and_changes_nothing(
    client: Client,
    world: World,
    method: str,
    path: str,
    target: Any,
    content_type: str | None,
    body: str,
    named: str,
) -> None:
    def state() -> tuple[list[Any], int, int]:
        calls = Conversation.objects.order_by("pk").values_list("pk", "agent_label", "updated_at")
        return list(calls), AlertRule.objects.count(), TranscriptSegment.objects.count()

    before = state()
    headers = {"Authorization": f"Bearer {world.secrets['ak_manage']}"}
    # An empty content_type: no Content-Type at all (the test client's default is one).
    response = client.generic(
        method.upper(),
        path.format(target(world)),
        body.encode(),
        content_type or "",
        headers=headers,
    )
    assert_error(response, 415, "unsupported_media_type")
    message = response.json()["error"]["message"]
    assert "application/json" in message and named in message
    assert state() == before


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/json;"]
)
def test_application_json_with_parameters_or_any_case_is_accepted(
    client: Client, world: World, content_type: str
) -> None:
    response = client.post(
        COLLECTION,
        data=json.dumps({"agent_label": "Ada"}),
        content_type=content_type,
        headers={"Authorization": f"Bearer {world.secrets['ak_manage']}"},
    )
    assert response.status_code == 201, response.content
    assert response.json()["agent_label"] == "Ada"


def test_an_empty_body_needs_no_content_type(client: Client, world: World) -> None:
    # Nothing to interpret: an empty body is the empty object, as before.
    response = client.generic(
        "POST", COLLECTION, b"", headers={"Authorization": f"Bearer {world.secrets['ak_manage']}"}
    )
    assert response.status_code == 201, response.content


def test_the_openapi_document_lists_415_for_every_operation_with_a_body() -> None:
    paths = build_document()["paths"]
    with_body = [op for ops in paths.values() for op in ops.values() if "requestBody" in op]
    # conversations (2), transcript push, alert rules, guidance, takeover (an empty object)
    assert len(with_body) == 6
    for operation in with_body:
        codes = operation["responses"]["415"]["content"]["application/json"]["schema"]
        assert codes["properties"]["error"]["properties"]["code"]["enum"] == [
            "unsupported_media_type"
        ]
