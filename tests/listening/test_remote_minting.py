"""Remote minting (``remote_minting.py``) against a scripted stand-in platform on a
local http.server: retries, backoff and how each answer is mapped. No LiveKit; the
portal minting through this project's own live API is in ``tests/e2e/``."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from django.forms.models import model_to_dict
from django.test import Client
from django.utils import timezone

from anyreach_listen.models import ListenSession
from tests.support.processes import free_port
from tests.support.remote import Scripted, mint_as_supervisor, mirror, remote, scripted_platform


@pytest.fixture
def scripted_remote() -> Iterator[Scripted]:
    """A stand-in platform (``tests/support/remote.py``); the test fills its script."""
    with scripted_platform() as platform:
        yield platform


def test_unreachable_remote_is_a_502_after_retries(client: Client, settings: Any, db: None) -> None:
    remote(settings, f"http://127.0.0.1:{free_port()}", "ak_x", RETRIES=2, TIMEOUT=1)
    response = mint_as_supervisor(client, mirror(str(uuid.uuid4())))
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "remote_unavailable"


TTL = 300  # LISTENER_TOKEN_TTL's default, which the tests keep

# A listener token's video grant as this project mints one (``minting.listener_grants``).
LISTENER_VIDEO = {
    "roomJoin": True,
    "canPublish": False,
    "canSubscribe": True,
    "canPublishData": False,
    "canUpdateOwnMetadata": False,
    "hidden": True,
}


def _token_body(
    room: str | None,
    identity: str | None = None,
    room_name: str | None = None,
    *,
    video: dict[str, Any] | None = None,
    claims: dict[str, Any] | None = None,
) -> bytes:
    """A remote's 200: a listener token for ``room`` (no video grant when None), valid
    for TTL seconds; ``video`` and ``claims`` change (a value of ``None``: drop) what a
    listener token holds."""
    payload: dict[str, Any] = {
        "sub": identity or f"listener-{uuid.uuid4()}",
        "exp": int(time.time()) + TTL,
    }
    if room is not None:
        payload["video"] = _changed({**LISTENER_VIDEO, "room": room}, video or {})
    token = jwt.encode(_changed(payload, claims or {}), "k" * 32)
    return json.dumps(
        {
            "url": "ws://lk",
            "token": token,
            "room_name": room if room_name is None else room_name,
            "expires_at": "2033-05-18T03:33:20Z",
        }
    ).encode()


def _changed(values: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = {**values, **changes}
    return {name: value for name, value in merged.items() if value is not None}


def _assert_refused(response: Any, caplog: pytest.LogCaptureFixture, why: str = "") -> None:
    """A 502 ``remote_mint_invalid``, no audit row, a warning saying why, no token logged."""
    assert response.status_code == 502, response.content
    assert response.json()["error"]["code"] == "remote_mint_invalid"
    assert not ListenSession.objects.exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("refused" in w and why in w for w in warnings), warnings
    assert "eyJ" not in caplog.text  # the token itself is never logged


def test_5xx_is_retried_with_backoff(
    scripted_remote: Scripted, client: Client, settings: Any, db: None
) -> None:
    url, attempts, script = scripted_remote
    conversation = mirror(str(uuid.uuid4()))
    script += [(503, {}, b""), (502, {}, b""), (200, {}, _token_body(conversation.livekit_room))]
    remote(settings, url, "ak_secret_value", RETRIES=2)
    response = mint_as_supervisor(client, conversation)
    assert response.status_code == 200
    assert attempts == ["Bearer ak_secret_value"] * 3


# --- the answer is checked (issue 17, item 9) ----------------------------------------


def test_an_answer_for_the_calls_room_and_a_new_listener_is_audited_once(
    scripted_remote: Scripted, client: Client, settings: Any, db: None
) -> None:
    url, _, script = scripted_remote
    conversation = mirror(str(uuid.uuid4()))
    identity = f"listener-{uuid.uuid4()}"
    script.append((200, {}, _token_body(conversation.livekit_room, identity)))
    remote(settings, url, "ak_x")
    response = mint_as_supervisor(client, conversation)
    assert response.status_code == 200, response.content
    assert response.json()["room_name"] == conversation.livekit_room
    row = ListenSession.objects.get()
    assert (row.listener_identity, str(row.conversation_id), row.via) == (
        identity,
        str(conversation.pk),
        "portal",
    )


@pytest.mark.parametrize(
    ("token_room", "room_name"),
    [
        ("call-of-another-org", "call-of-another-org"),  # both name another room
        ("call-of-another-org", None),  # room_name agrees, the token does not
        (None, "call-of-another-org"),  # the token agrees, room_name does not
        ("", None),  # a token with an empty room grant
        ("no-grant", None),  # a token without a video grant at all
    ],
)
def test_an_answer_for_another_room_is_a_502_and_writes_no_row(
    scripted_remote: Scripted,
    client: Client,
    settings: Any,
    db: None,
    caplog: pytest.LogCaptureFixture,
    token_room: str | None,
    room_name: str | None,
) -> None:
    url, _, script = scripted_remote
    conversation = mirror(str(uuid.uuid4()))
    room = conversation.livekit_room
    body = (
        _token_body(None, room_name=room)
        if token_room == "no-grant"
        else _token_body(room if token_room is None else token_room, room_name=room_name)
    )
    script.append((200, {}, body))
    remote(settings, url, "ak_x")
    with caplog.at_level(logging.WARNING, logger="anyreach_listen.listening.remote_minting"):
        response = mint_as_supervisor(client, conversation)
    _assert_refused(response, caplog)


# Each makes a listener token something more, or not a listener's at all.
NOT_A_LISTENERS_TOKEN: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    # name: (video grant changes, claim changes, what the warning names)
    "identity not a listener's": ({}, {"sub": "agent-7"}, "is not a listener's"),
    "identity only looks like one": ({}, {"sub": "Listener-7"}, "is not a listener's"),
    "identity not a string": ({}, {"sub": 7}, "is not a listener's"),
    "may publish": ({"canPublish": True}, {}, "canPublish is True"),
    "publish absent (LiveKit: true)": ({"canPublish": None}, {}, "canPublish is None"),
    "may publish data": ({"canPublishData": True}, {}, "canPublishData is True"),
    "publish data absent": ({"canPublishData": None}, {}, "canPublishData is None"),
    "visible": ({"hidden": False}, {}, "hidden is False"),
    "hidden absent": ({"hidden": None}, {}, "hidden is None"),
    "room admin": ({"roomAdmin": True}, {}, "roomAdmin"),
    "room create": ({"roomCreate": True}, {}, "roomCreate"),
    "room record": ({"roomRecord": True}, {}, "roomRecord"),
    "room list": ({"roomList": True}, {}, "roomList"),
    "agent": ({"agent": True}, {}, "agent"),
    "renames itself": ({"canUpdateOwnMetadata": True}, {}, "canUpdateOwnMetadata"),
    "forwarded elsewhere": ({"destinationRoom": "other"}, {}, "destinationRoom"),
    "a SIP grant": ({}, {"sip": {"admin": True}}, "SIP"),
    "an agent participant": ({}, {"kind": "agent"}, "participant kind 'agent'"),
    "an egress participant": ({}, {"kind": "egress"}, "participant kind 'egress'"),
    "a SIP participant": ({}, {"kind": "sip"}, "participant kind 'sip'"),
    "kind not a string": ({}, {"kind": 1}, "participant kind 1"),
    "lives an hour": ({}, {"exp_in": 3600}, "past the listener token"),
    "lives for years": ({}, {"exp": 2_000_000_000}, "past the listener token"),
}


@pytest.mark.parametrize("case", NOT_A_LISTENERS_TOKEN)
def test_an_answer_that_is_not_a_listeners_token_is_a_502_and_writes_no_row(
    scripted_remote: Scripted,
    client: Client,
    settings: Any,
    db: None,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    video, claims, why = NOT_A_LISTENERS_TOKEN[case]
    if "exp_in" in claims:  # seconds from now
        claims = {"exp": int(time.time()) + claims["exp_in"]}
    url, _, script = scripted_remote
    conversation = mirror(str(uuid.uuid4()))
    body = _token_body(conversation.livekit_room, video=video, claims=claims)
    script.append((200, {}, body))
    remote(settings, url, "ak_x")
    with caplog.at_level(logging.WARNING, logger="anyreach_listen.listening.remote_minting"):
        response = mint_as_supervisor(client, conversation)
    _assert_refused(response, caplog, why)


@pytest.mark.parametrize("kind", ["standard", ""])
def test_a_standard_participants_token_is_accepted(
    scripted_remote: Scripted, client: Client, settings: Any, db: None, kind: str
) -> None:
    url, _, script = scripted_remote
    conversation = mirror(str(uuid.uuid4()))
    script.append((200, {}, _token_body(conversation.livekit_room, claims={"kind": kind})))
    remote(settings, url, "ak_x")
    response = mint_as_supervisor(client, conversation)
    assert response.status_code == 200, response.content


def test_a_listener_token_within_the_lifetime_and_its_leeway_is_accepted(
    scripted_remote: Scripted, client: Client, settings: Any, db: None
) -> None:
    # The remote's clock may run a little ahead of ours.
    url, _, script = scripted_remote
    conversation = mirror(str(uuid.uuid4()))
    exp = int(time.time()) + TTL + 30
    script.append((200, {}, _token_body(conversation.livekit_room, claims={"exp": exp})))
    remote(settings, url, "ak_x")
    response = mint_as_supervisor(client, conversation)
    assert response.status_code == 200, response.content
    assert ListenSession.objects.get().expires_at.timestamp() == exp


@pytest.mark.parametrize("of_this_call", [True, False])
def test_an_answer_naming_a_known_listener_is_a_502_and_leaves_its_row_alone(
    scripted_remote: Scripted, client: Client, settings: Any, db: None, of_this_call: bool
) -> None:
    url, _, script = scripted_remote
    conversation = mirror(str(uuid.uuid4()))
    # An earlier listen, of this call (a replayed answer) or another, already audited here.
    earlier = conversation if of_this_call else mirror(str(uuid.uuid4()))
    existing = ListenSession.objects.create(
        conversation=earlier,
        listener_identity=f"listener-{uuid.uuid4()}",
        via="api",
        expires_at=timezone.now() + dt.timedelta(minutes=5),
    )
    existing.refresh_from_db()  # as the database holds it
    before = model_to_dict(existing)
    script.append((200, {}, _token_body(conversation.livekit_room, existing.listener_identity)))
    remote(settings, url, "ak_x")
    response = mint_as_supervisor(client, conversation)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "remote_mint_invalid"
    assert list(ListenSession.objects.all()) == [existing]
    existing.refresh_from_db()
    assert model_to_dict(existing) == before


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected", "code"),
    [
        (429, {"Retry-After": "7"}, b"{}", 429, "rate_limited"),
        (
            200,
            {},
            b'{"url": "ws://lk", "token": "not-a-jwt", "room_name": "r", "expires_at": "x"}',
            502,
            "remote_invalid",
        ),
        (200, {}, b"<html>", 502, "remote_rejected"),
        (500, {}, b"", 502, "remote_unavailable"),
    ],
)
def test_remote_answers_are_mapped(
    scripted_remote: Scripted,
    client: Client,
    settings: Any,
    db: None,
    status: int,
    headers: dict[str, str],
    body: bytes,
    expected: int,
    code: str,
) -> None:
    url, attempts, script = scripted_remote
    script.append((status, headers, body))
    remote(settings, url, "ak_x", RETRIES=1)
    response = mint_as_supervisor(client, mirror(str(uuid.uuid4())))
    assert response.status_code == expected
    assert response.json()["error"]["code"] == code
    assert len(attempts) == (2 if status >= 500 else 1)
    if status == 429:
        assert response["Retry-After"] == "7"
