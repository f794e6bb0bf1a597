"""``POST /livekit/recorder`` (``recorder/intake.py``): the recorders' signed deliveries.

A delivery signed with the LiveKit secret, as a recorder token, with the body's hash,
is recorded by the portal's process, which publishes the final lines and alerts on
commit (so they reach its websockets on the in-memory layer). Anything else signed
with the same secret (a listener token, a LiveKit webhook token), a wrong secret, an
expired or long-lived token, a tampered body or no header is a 401 JSON; a malformed
body 400, an unknown room 404, a call that ended long ago 409.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.handlers.asgi import ASGIRequest
from django.test import Client
from django.utils import timezone
from livekit import api

from anyreach_listen import alerts
from anyreach_listen.api.body_limit import MAX_BODY
from anyreach_listen.conf import listen_settings
from anyreach_listen.events import organization_group
from anyreach_listen.listening.minting import listener_grants, sign_listener_token
from anyreach_listen.models import Alert, Conversation, TranscriptSegment
from anyreach_listen.recorder import dispatch as recorder_dispatch
from anyreach_listen.recorder import intake as recorder_intake
from anyreach_listen.recorder import wire
from anyreach_listen.recorder.wire import RECORDER_IDENTITY, body_hash, sign
from anyreach_listen.transcripts import latest_interim
from tests.support.livekit import sign_webhook
from tests.support.world import World
from tests.test_consumers_alerts import _in_memory_layer

__all__ = ["_in_memory_layer"]  # the autouse fixture, imported to apply here too

URL = "/livekit/recorder"
GREETING = {"id": "a1", "role": "agent", "text": "Hello, Acme billing.", "final": True}
COMPLAINT = {"id": "u1", "role": "user", "text": "I was charged twice!", "final": True}


def body_of(call: Conversation, *segments: dict[str, Any], **extra: Any) -> bytes:
    data: dict[str, Any] = {"room": call.livekit_room, "conversation_id": str(call.pk)}
    data |= {"segments": list(segments), **extra}
    return json.dumps(data).encode()


def deliver(
    body: bytes, authorization: str | None = "sign", content_type: str = "application/json"
) -> Any:
    if authorization == "sign":
        key, secret = listen_settings.LIVEKIT_API_KEY, listen_settings.LIVEKIT_API_SECRET
        authorization = sign(body, key, secret)
    headers = {} if authorization is None else {"Authorization": authorization}
    client = Client(enforce_csrf_checks=True)  # like a recorder: no CSRF token
    return client.post(URL, data=body, content_type=content_type, headers=headers)


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


async def _receive(layer: Any, channel: str, count: int) -> list[dict[str, Any]]:
    return [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(count)]


def stored(call: Conversation) -> list[tuple[str, str, str, bool]]:
    rows = TranscriptSegment.objects.filter(conversation=call).order_by("position")
    return [(s.segment_id, s.role, s.text, s.final) for s in rows]


@pytest.mark.django_db(transaction=True)  # events are sent on a real commit
def test_a_valid_delivery_is_recorded_and_its_events_published_on_commit(world: World) -> None:
    call = world.conversations["in_progress"]
    alerts.create_rule(world.org, phrase="charged twice")
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(organization_group(world.org.pk), channel)

    response = deliver(body_of(call, GREETING, COMPLAINT))

    assert response.status_code == 200, response.content
    assert response.json() == {"recorded": 2, "unchanged": 0}
    assert stored(call) == [
        ("a1", "agent", "Hello, Acme billing.", True),
        ("u1", "user", "I was charged twice!", True),
    ]
    assert Alert.objects.filter(conversation=call).count() == 1
    received = async_to_sync(_receive)(layer, channel, 3)
    assert [m["type"] for m in received] == [
        "transcript.segment",
        "transcript.segment",
        "alert.raised",
    ]
    assert [m["segment"]["id"] for m in received[:2]] == ["a1", "u1"]
    assert received[2]["alert"]["phrase"] == "charged twice"
    # A second copy (a retry, the room's other recorder) stores nothing twice.
    assert deliver(body_of(call, GREETING, COMPLAINT)).json() == {"recorded": 0, "unchanged": 2}


def test_without_a_conversation_id_the_rooms_active_call_is_used(world: World) -> None:
    call = world.conversations["in_progress"]
    body = json.dumps({"room": call.livekit_room, "segments": [GREETING]}).encode()
    assert deliver(body).status_code == 200
    assert stored(call) == [("a1", "agent", "Hello, Acme billing.", True)]


def test_interim_text_goes_to_the_portals_cache(world: World) -> None:
    call = world.conversations["in_progress"]
    interim = {"id": "u2", "role": "user", "text": "I was", "final": False}
    assert deliver(body_of(call, interim)).json() == {"recorded": 1, "unchanged": 0}
    assert latest_interim(call.pk, "user") == {"id": "u2", "text": "I was"}


def _token(**changes: Any) -> api.AccessToken:
    key, secret = listen_settings.LIVEKIT_API_KEY, listen_settings.LIVEKIT_API_SECRET
    return api.AccessToken(changes.get("key", key), changes.get("secret", secret))


SHORT = dt.timedelta(seconds=30)  # within the intake's limit: refused for another reason
NOT_RECORDERS = "not a recorder delivery token"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing", "no bearer token"),
        ("not_bearer", "no bearer token"),
        ("wrong_secret", "InvalidSignatureError"),
        ("wrong_issuer", "InvalidIssuerError"),
        ("expired", "ExpiredSignatureError"),
        ("too_long_lived", "token lifetime too long"),
        ("tampered", "body hash mismatch"),
        ("no_hash", "body hash mismatch"),
        ("listener_token", NOT_RECORDERS),
        ("room_grant_with_hash", NOT_RECORDERS),
        ("webhook_token", NOT_RECORDERS),
        ("agent_without_identity", NOT_RECORDERS),
    ],
)
def test_deliveries_not_signed_as_a_recorder_delivery_are_refused(
    world: World, case: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    call = world.conversations["in_progress"]
    body = body_of(call, GREETING)
    key, secret = listen_settings.LIVEKIT_API_KEY, listen_settings.LIVEKIT_API_SECRET
    digest = body_hash(body)
    recorder = _token().with_identity(RECORDER_IDENTITY).with_kind("agent").with_ttl(SHORT)
    authorization: str | None
    if case == "missing":
        authorization = None
    elif case == "not_bearer":
        authorization = sign(body, key, secret).removeprefix("Bearer ")  # as webhooks send it
    elif case == "wrong_secret":
        authorization = sign(body, key, "another-secret-of-more-than-32-characters!")
    elif case == "wrong_issuer":
        authorization = sign(body, "APIother", secret)
    elif case == "expired":
        token = recorder.with_sha256(digest).with_ttl(dt.timedelta(seconds=-30)).to_jwt()
        authorization = f"Bearer {token}"
    elif case == "too_long_lived":
        token = recorder.with_sha256(digest).with_ttl(dt.timedelta(hours=1)).to_jwt()
        authorization = f"Bearer {token}"
    elif case == "tampered":
        authorization = sign(body, key, secret)
        body = body.replace(b"Hello", b"Hallo")
    elif case == "no_hash":
        authorization = f"Bearer {recorder.to_jwt()}"
    elif case == "listener_token":
        # A listener's grants and identity, short-lived and with the body's hash.
        token = (
            _token()
            .with_identity("listener-abc")
            .with_grants(listener_grants(str(call.livekit_room)))
            .with_sha256(digest)
            .with_ttl(SHORT)
            .to_jwt()
        )
        authorization = f"Bearer {token}"
    elif case == "room_grant_with_hash":
        # Everything a recorder delivery has, plus a room grant: a participant's token.
        grants = listener_grants(str(call.livekit_room))
        token = recorder.with_grants(grants).with_sha256(digest).to_jwt()
        authorization = f"Bearer {token}"
    elif case == "webhook_token":
        # What LiveKit signs a webhook with: the body's hash, no identity.
        token = _token().with_sha256(digest).with_ttl(SHORT).to_jwt()
        authorization = f"Bearer {token}"
    else:  # kind agent, the hash, but not the recorder's identity
        other = _token().with_identity("recorder-AJ_1").with_kind("agent").with_sha256(digest)
        authorization = f"Bearer {other.with_ttl(SHORT).to_jwt()}"

    with caplog.at_level(logging.WARNING, "anyreach_listen.recorder.intake"):
        response = deliver(body, authorization)

    assert_error(response, 401, "invalid_signature")
    assert stored(call) == []
    assert reason in caplog.text
    if authorization:  # never logged
        assert authorization.split()[-1] not in caplog.text


def test_a_real_listener_token_is_refused(world: World) -> None:
    call = world.conversations["in_progress"]
    token = sign_listener_token(call, "listener-abc")
    assert_error(deliver(body_of(call, GREETING), f"Bearer {token}"), 401, "invalid_signature")


def test_a_real_webhook_signature_is_refused(world: World) -> None:
    call = world.conversations["in_progress"]
    body = body_of(call, GREETING)
    key, secret = listen_settings.LIVEKIT_API_KEY, listen_settings.LIVEKIT_API_SECRET
    webhook = sign_webhook(body.decode(), key, secret)
    assert_error(deliver(body, f"Bearer {webhook}"), 401, "invalid_signature")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[]", "invalid_json"),
        (b'{"room": "room-in_progress", "segments": [], "extra": 1}', "unknown_field"),
        (b'{"segments": []}', "invalid_field"),
        (b'{"room": 7, "segments": []}', "invalid_field"),
        (b'{"room": "room-in_progress", "conversation_id": "nope", "segments": []}',
         "invalid_field"),
        (b'{"room": "room-in_progress"}', "invalid_field"),
        (b'{"room": "room-in_progress", "segments": [{"id": "a", "role": "boss", '
         b'"text": "x", "final": true}]}', "invalid_field"),
        (b'{"room": "room-in_progress", "segments": [{"id": "a", "role": "user", '
         b'"text": "x", "final": "yes"}]}', "invalid_field"),
    ],
)  # fmt: skip
def test_malformed_deliveries_are_400(world: World, body: bytes, code: str) -> None:
    assert_error(deliver(body), 400, code)


def test_a_signed_delivery_not_sent_as_json_is_415_and_stores_nothing(world: World) -> None:
    call = world.conversations["in_progress"]
    response = deliver(body_of(call, GREETING), content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")
    assert stored(call) == []


def test_an_unknown_room_or_a_conversation_of_another_room_is_404(world: World) -> None:
    body = json.dumps({"room": "room-nobody", "segments": [GREETING]}).encode()
    assert_error(deliver(body), 404, "conversation_not_found")
    call, other = world.conversations["in_progress"], world.conversations["ringing"]
    body = body_of(call, GREETING, conversation_id=str(other.pk))
    assert_error(deliver(body), 404, "conversation_not_found")
    assert stored(call) == [] and stored(other) == []


def test_a_call_that_ended_long_ago_is_409_transcript_closed(world: World) -> None:
    call = world.conversations["completed"]
    ended = timezone.now() - dt.timedelta(seconds=listen_settings.TRANSCRIPT_LATE_SECONDS + 1)
    Conversation.objects.filter(pk=call.pk).update(ended_at=ended)
    assert_error(deliver(body_of(call, GREETING)), 409, "transcript_closed")
    assert stored(call) == []


def test_a_body_over_the_limit_is_413_before_its_hash_is_computed() -> None:
    """With or without a Content-Length (a chunked body has none), a body over 64 KB is
    refused without hashing it, signed or not."""
    big = json.dumps({"room": "room-1", "segments": [], "pad": "x" * MAX_BODY}).encode()
    key, secret = listen_settings.LIVEKIT_API_KEY, listen_settings.LIVEKIT_API_SECRET
    for authorization in (sign(big, key, secret), None):
        headers = [(b"content-type", b"application/json")]
        if authorization is not None:
            headers.append((b"authorization", authorization.encode()))
        for length in (True, False):
            sized = [(b"content-length", str(len(big)).encode())] if length else []
            scope = {"type": "http", "method": "POST", "path": URL, "headers": headers + sized}
            request = ASGIRequest(scope, io.BytesIO(big))
            with mock.patch.object(wire, "body_hash", wraps=body_hash) as hashed:
                response = recorder_intake.recorder_delivery(request)
            assert response.status_code == 413, response.content
            assert json.loads(response.content)["error"]["code"] == "payload_too_large"
            assert hashed.call_count == 0, (authorization is not None, length)


def test_other_methods_are_json_405(world: World) -> None:
    response = Client().get(URL)
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST"


def test_a_workers_registration_sweeps_on_the_dispatch_thread(world: World) -> None:
    body = json.dumps({"registered": "AW_1"}).encode()
    with mock.patch.object(recorder_dispatch, "sweep_in_background") as sweep:
        response = deliver(body)
        assert response.status_code == 202 and response.json() == {"sweep": "queued"}
        sweep.assert_called_once_with()
        assert_error(deliver(body, None), 401, "invalid_signature")
        assert sweep.call_count == 1
    bad = json.dumps({"registered": 1}).encode()
    assert_error(deliver(bad), 400, "invalid_field")
