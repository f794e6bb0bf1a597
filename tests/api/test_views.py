"""The listener-token endpoint, exactly per the contract."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import jwt
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from livekit.api import TokenVerifier
from openapi_schema_validator import OAS31Validator

from anyreach_listen.access.credentials import hash_secret, issue_api_key, parse
from anyreach_listen.access.roles import Scope
from anyreach_listen.api.openapi import build_document
from anyreach_listen.listening.minting import LISTENER_IDENTITY_PREFIX, grant_listen
from anyreach_listen.models import ApiKey, ListenSession, ListenVia, PersonalAccessToken
from tests.support.world import TEST_LISTEN_SETTINGS, World

URL = "/core/conversations/{}/listener-token"
OPENAPI = build_document()


def post(
    client: Client,
    conversation_id: str,
    authorization: str | None,
    org: str | None = None,
    **extra: Any,
) -> Any:
    headers: dict[str, str] = {}
    if authorization is not None:
        headers["Authorization"] = authorization
    if org is not None:
        headers["X-Anyreach-Org"] = org
    return client.post(URL.format(conversation_id), headers=headers, **extra)


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    OAS31Validator(OPENAPI["components"]["schemas"]["Error"]).validate(body)
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    # The document lists every status the API can answer.
    assert str(status) in OPENAPI["paths"][URL.format("{conversation_id}")]["post"]["responses"]


# (credential, X-Anyreach-Org, conversation, status, error code or None for success)
# Org values: None (no header), "own", "other", "garbage".
# Conversation values: a key of World.conversations, or "unknown_uuid" / "not_a_uuid".
MATRIX = [
    # Organization API keys
    ("ak_read_sensitive", None, "in_progress", 200, None),
    ("ak_read_sensitive", None, "triggered", 200, None),
    ("ak_read_sensitive", None, "ringing", 200, None),
    ("ak_manage", None, "in_progress", 200, None),
    ("ak_read_sensitive", "own", "in_progress", 200, None),
    ("ak_read_sensitive", None, "other_team", 200, None),  # keys see the whole org
    ("ak_read_sensitive", "other", "in_progress", 403, "organization_mismatch"),
    ("ak_read_sensitive", "garbage", "in_progress", 400, "invalid_organization"),
    ("ak_no_scope", None, "in_progress", 403, "insufficient_scope"),
    ("ak_no_scope", None, "unknown_uuid", 403, "insufficient_scope"),
    ("ak_read_sensitive", None, "completed", 409, "conversation_not_active"),
    ("ak_read_sensitive", None, "failed", 409, "conversation_not_active"),
    ("ak_read_sensitive", None, "canceled", 409, "conversation_not_active"),
    ("ak_read_sensitive", None, "no_room", 404, "room_not_found"),
    ("ak_read_sensitive", None, "other_org", 404, "conversation_not_found"),
    ("ak_read_sensitive", None, "unknown_uuid", 404, "conversation_not_found"),
    ("ak_read_sensitive", None, "not_a_uuid", 404, "conversation_not_found"),
    ("ak_other_org", None, "in_progress", 404, "conversation_not_found"),
    # Personal access tokens: scopes = own scopes ∩ role's scopes; team visibility
    ("pat_supervisor", "own", "in_progress", 200, None),
    ("pat_qa", "own", "in_progress", 200, None),
    ("pat_admin", "own", "in_progress", 200, None),
    ("pat_admin", "own", "other_team", 200, None),
    ("pat_supervisor", "own", "other_team", 404, "conversation_not_found"),
    ("pat_supervisor", None, "in_progress", 400, "missing_organization"),
    ("pat_supervisor", "garbage", "in_progress", 400, "invalid_organization"),
    ("pat_supervisor", "other", "in_progress", 403, "not_a_member"),
    ("pat_outsider", "own", "in_progress", 403, "not_a_member"),
    ("pat_viewer", "own", "in_progress", 403, "insufficient_scope"),
    ("pat_supervisor_read_only", "own", "in_progress", 403, "insufficient_scope"),
    ("pat_supervisor", "own", "completed", 409, "conversation_not_active"),
    ("pat_supervisor", "own", "no_room", 404, "room_not_found"),
    ("pat_supervisor", "own", "other_org", 404, "conversation_not_found"),
]


@pytest.mark.parametrize(("credential", "org", "conversation", "status", "code"), MATRIX)
def test_matrix(
    client: Client,
    world: World,
    credential: str,
    org: str | None,
    conversation: str,
    status: int,
    code: str | None,
) -> None:
    org_header = {
        None: None,
        "own": str(world.org.pk),
        "other": str(world.other_org.pk),
        "garbage": "not-an-org",
    }[org]
    conversation_id = {
        "unknown_uuid": str(uuid.uuid4()),
        "not_a_uuid": "not-a-uuid",
    }.get(conversation) or str(world.conversations[conversation].pk)

    before = ListenSession.objects.count()
    response = post(client, conversation_id, f"Bearer {world.secrets[credential]}", org_header)

    if code is None:
        assert response.status_code == 200, response.content
        assert set(response.json()) == {"url", "token", "room_name", "expires_at"}
        assert ListenSession.objects.count() == before + 1
    else:
        assert_error(response, status, code)
        assert ListenSession.objects.count() == before


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "missing_credentials"),
        ("", "missing_credentials"),
        ("Basic dXNlcjpwYXNz", "invalid_credentials"),
        ("Bearer", "invalid_credentials"),
        ("Bearer not-a-token", "invalid_credentials"),
        ("Bearer ak_000000000000_" + "x" * 43, "invalid_credentials"),
    ],
)
def test_bad_credentials_are_401_with_challenge(
    client: Client, world: World, authorization: str | None, code: str
) -> None:
    response = post(client, str(world.conversations["in_progress"].pk), authorization)
    assert_error(response, 401, code)
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("kind", ["ak_read_sensitive", "pat_supervisor"])
def test_wrong_secret_for_a_real_lookup_id_is_401(client: Client, world: World, kind: str) -> None:
    real = world.secrets[kind]
    forged = real[: real.rindex("_") + 1] + "A" * 43
    response = post(
        client, str(world.conversations["in_progress"].pk), f"Bearer {forged}", str(world.org.pk)
    )
    assert_error(response, 401, "invalid_credentials")


def test_revoked_and_expired_credentials_are_401(client: Client, world: World) -> None:
    conversation = str(world.conversations["in_progress"].pk)
    lookup = parse(world.secrets["ak_read_sensitive"])
    assert lookup is not None
    ApiKey.objects.filter(lookup_id=lookup.lookup_id).update(revoked_at=timezone.now())
    response = post(client, conversation, f"Bearer {world.secrets['ak_read_sensitive']}")
    assert_error(response, 401, "credentials_revoked")

    pat = parse(world.secrets["pat_supervisor"])
    assert pat is not None
    PersonalAccessToken.objects.filter(lookup_id=pat.lookup_id).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    response = post(
        client, conversation, f"Bearer {world.secrets['pat_supervisor']}", str(world.org.pk)
    )
    assert_error(response, 401, "credentials_expired")


def test_inactive_user_pat_is_401(client: Client, world: World) -> None:
    world.users["supervisor"].is_active = False
    world.users["supervisor"].save()
    response = post(
        client,
        str(world.conversations["in_progress"].pk),
        f"Bearer {world.secrets['pat_supervisor']}",
        str(world.org.pk),
    )
    assert_error(response, 401, "invalid_credentials")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"", None), (b"", "application/json"), (b"ignored", "text/plain")],
)
def test_minting_takes_no_body_and_needs_no_content_type(
    client: Client, world: World, body: bytes, content_type: str | None
) -> None:
    # The endpoint reads no body: a bare POST (curl -X POST, httpx.post(url)) mints,
    # and so does one whose unused body is not JSON.
    conversation = world.conversations["in_progress"]
    headers = {"Authorization": f"Bearer {world.secrets['ak_read_sensitive']}"}
    response = client.generic(
        "POST", URL.format(conversation.pk), body, content_type or "", headers=headers
    )
    assert response.status_code == 200, response.content
    assert response.json()["room_name"] == conversation.livekit_room


def test_success_response_and_jwt(client: Client, world: World) -> None:
    conversation = world.conversations["in_progress"]
    response = post(
        client,
        str(conversation.pk),
        f"Bearer {world.secrets['ak_read_sensitive']}",
        HTTP_USER_AGENT="integration-test/1.0",
        REMOTE_ADDR="203.0.113.7",
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    OAS31Validator(OPENAPI["components"]["schemas"]["ListenerToken"]).validate(body)
    assert body["url"] == TEST_LISTEN_SETTINGS["LIVEKIT_URL"]
    assert body["room_name"] == "room-in_progress"
    assert body["expires_at"].endswith("Z")

    # The signature verifies with the configured LiveKit credentials.
    claims = TokenVerifier(
        TEST_LISTEN_SETTINGS["LIVEKIT_API_KEY"], TEST_LISTEN_SETTINGS["LIVEKIT_API_SECRET"]
    ).verify(body["token"])
    raw = jwt.decode(body["token"], options={"verify_signature": False})
    assert (
        dt.datetime.fromtimestamp(raw["exp"], tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        == body["expires_at"]
    )
    assert raw["exp"] - raw["nbf"] == 300  # default TTL
    video = raw["video"]
    assert video == {
        "roomJoin": True,
        "room": "room-in_progress",
        "canSubscribe": True,
        "canPublish": False,
        "canPublishData": False,
        "canUpdateOwnMetadata": False,
        "hidden": True,
    }
    assert claims.video is not None and claims.video.hidden is True
    assert raw["sub"].startswith(LISTENER_IDENTITY_PREFIX)

    session = ListenSession.objects.get()
    assert session.listener_identity == raw["sub"]
    assert session.via == "api"
    assert session.api_key is not None and session.user is None
    assert session.client_ip == "203.0.113.7"
    assert session.user_agent == "integration-test/1.0"
    assert session.expires_at == dt.datetime.fromtimestamp(raw["exp"], tz=dt.UTC)


def test_identity_is_unique_per_mint_and_pat_audits_the_user(client: Client, world: World) -> None:
    conversation = str(world.conversations["in_progress"].pk)
    auth = f"Bearer {world.secrets['pat_qa']}"
    tokens = [post(client, conversation, auth, str(world.org.pk)).json()["token"] for _ in range(3)]
    identities = {jwt.decode(t, options={"verify_signature": False})["sub"] for t in tokens}
    assert len(identities) == 3
    sessions = ListenSession.objects.all()
    assert {s.user for s in sessions} == {world.users["qa"]}
    assert all(s.personal_access_token is not None and s.api_key is None for s in sessions)


def test_ttl_comes_from_settings(client: Client, world: World, settings: Any) -> None:
    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, "LISTENER_TOKEN_TTL": 42}
    body = post(
        client, str(world.conversations["in_progress"].pk), f"Bearer {world.secrets['ak_manage']}"
    ).json()
    raw = jwt.decode(body["token"], options={"verify_signature": False})
    assert raw["exp"] - raw["nbf"] == 42


def test_org_embed_origins_travel_in_token_metadata(client: Client, world: World) -> None:
    world.org.allowed_embed_origins = ["https://crm.example.com"]
    world.org.save()
    body = post(
        client, str(world.conversations["in_progress"].pk), f"Bearer {world.secrets['ak_manage']}"
    ).json()
    raw = jwt.decode(body["token"], options={"verify_signature": False})
    assert '"embed_origins": ["https://crm.example.com"]' in raw["metadata"]


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_other_methods_are_405(client: Client, world: World, method: str) -> None:
    response = getattr(client, method)(URL.format(world.conversations["in_progress"].pk))
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST"


def test_rate_limit_per_credential(client: Client, world: World, settings: Any) -> None:
    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, "RATE_LIMIT_REQUESTS": 2}
    conversation = str(world.conversations["in_progress"].pk)
    auth = f"Bearer {world.secrets['ak_read_sensitive']}"
    assert post(client, conversation, auth).status_code == 200
    assert post(client, conversation, auth).status_code == 200
    limited = post(client, conversation, auth)
    assert_error(limited, 429, "rate_limited")
    assert 1 <= int(limited["Retry-After"]) <= 60
    # Another credential has its own budget.
    assert post(client, conversation, f"Bearer {world.secrets['ak_manage']}").status_code == 200


def test_last_used_is_recorded(client: Client, world: World) -> None:
    key, secret = issue_api_key(world.org, "fresh", [Scope.MANAGE])
    assert key.last_used_at is None
    post(client, str(world.conversations["in_progress"].pk), f"Bearer {secret}")
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_no_plaintext_secret_in_the_database(client: Client, world: World) -> None:
    post(
        client,
        str(world.conversations["in_progress"].pk),
        f"Bearer {world.secrets['ak_read_sensitive']}",
    )
    dump: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 (table names from Django)
            dump.extend(str(row) for row in cursor.fetchall())
    text = "\n".join(dump)
    for secret in world.secrets.values():
        presented = parse(secret)
        assert presented is not None
        assert secret not in text
        assert presented.secret not in text
        assert hash_secret(presented.secret) in text  # the keyed hash is what is stored


def test_unknown_api_path_answers_in_the_same_format(client: Client, db: None) -> None:
    assert_error(client.get("/core/nothing-here"), 404, "not_found")


def _statements(queries: CaptureQueriesContext) -> list[str]:
    return [str(q["sql"]) for q in queries.captured_queries]


@pytest.mark.parametrize("credential", ["ak_read_sensitive", "pat_admin"])
def test_a_mint_reads_the_call_once_locked_inside_its_audit_transaction(
    client: Client, world: World, credential: str
) -> None:
    """The lookup is the audit transaction's locked read and the call is not read again:
    a change racing the mint waits for it, or the mint sees the change."""
    conversation = world.conversations["in_progress"]
    org = str(world.org.pk) if credential.startswith("pat_") else None
    with CaptureQueriesContext(connection) as queries:
        response = post(client, str(conversation.pk), f"Bearer {world.secrets[credential]}", org)
    assert response.status_code == 200, response.content
    sql = _statements(queries)
    call_reads = [
        i
        for i, q in enumerate(sql)
        if q.startswith("SELECT") and 'FROM "anyreach_listen_conversation"' in q
    ]
    audit_row = next(i for i, q in enumerate(sql) if 'INTO "anyreach_listen_listensession"' in q)
    begin = next(i for i, q in enumerate(sql) if q.startswith(("BEGIN", "SAVEPOINT")))
    # Read once, in the transaction, before the audit row (a PAT's entitlement check reads
    # it again afterwards, as its owner sees it).
    assert [i for i in call_reads if i < audit_row] == [call_reads[0]]
    assert begin < call_reads[0]


@pytest.mark.django_db(transaction=True)  # no test transaction around it
def test_grant_listen_refuses_locked_outside_a_transaction(world: World) -> None:
    with pytest.raises(ValueError, match="locked=True"):
        grant_listen(world.conversations["in_progress"], via=ListenVia.API, locked=True)
