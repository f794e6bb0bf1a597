"""asgi.py's ``limit_body_size``, in the portal's real ASGI application (``config.asgi``):
a JSON endpoint's oversized body is refused while it arrives, before Django spools it,
with or without a Content-Length; what fits reaches Django whole; other paths are
Django's business.

Driven as daphne drives an application: the body in 64 KB messages; ``Upload.sent``
counts what the application pulled.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from anyreach_listen.body_limit import WEBHOOK_MAX_BODY, describe
from anyreach_listen.conf import listen_settings
from anyreach_listen.models import Conversation, ConversationStatus
from tests.support.asgi import CHUNK, ENDPOINTS, endpoint, json_body, request
from tests.support.livekit import sign_webhook, webhook_event
from tests.support.world import World

BIG = 3 * 1024 * 1024


@pytest.fixture(scope="module")
def application() -> Any:
    from config.asgi import application  # imported late: Django is set up by then

    return application


def assert_too_large(answer: Any, limit: int) -> None:
    assert answer.status == 413, answer.body[:300]
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"] == {
        "code": "payload_too_large",
        "message": f"The body is larger than {describe(limit)}.",
    }
    assert answer.headers["connection"] == "close"  # the unread rest is no next request


@pytest.mark.parametrize("content_length", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("name", ENDPOINTS)
def test_an_oversized_body_is_refused_while_it_arrives(
    world: World,
    application: Any,
    caplog: pytest.LogCaptureFixture,
    name: str,
    content_length: bool,
) -> None:
    target = endpoint(world, name)
    with caplog.at_level(logging.DEBUG):
        answer = request(
            application,
            target.method,
            target.path,
            json_body(BIG),
            headers=target.headers,
            content_length=content_length,
        )
    assert_too_large(answer, target.limit)
    # A declared length is refused unread; a chunked body once it passed the limit.
    assert answer.upload.sent <= (0 if content_length else target.limit + CHUNK)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_under_a_root_path_the_endpoint_is_found_too(world: World, application: Any) -> None:
    answer = request(
        application,
        "POST",
        "/portal/livekit/webhook",
        json_body(BIG),
        content_length=False,
        root_path="/portal",
    )
    assert_too_large(answer, WEBHOOK_MAX_BODY)
    assert answer.upload.sent <= WEBHOOK_MAX_BODY + CHUNK


def padded_event(room: str, size: int) -> bytes:
    """A LiveKit event of exactly ``size`` bytes (JSON allows the blanks)."""
    text = webhook_event("room_finished", room)
    return (text[:-1] + " " * (size - len(text)) + "}").encode()


def test_the_limit_is_exact_and_what_fits_reaches_django_whole(
    world: World, application: Any
) -> None:
    call = world.conversations[ConversationStatus.IN_PROGRESS]
    key, secret = listen_settings.LIVEKIT_API_KEY, listen_settings.LIVEKIT_API_SECRET

    def deliver(body: bytes) -> Any:
        signed = sign_webhook(body.decode(), key, secret)
        headers = [("authorization", signed), ("content-type", "application/webhook+json")]
        return request(
            application, "POST", "/livekit/webhook", body, headers=headers, content_length=False
        )

    over = deliver(padded_event(call.livekit_room or "", WEBHOOK_MAX_BODY + 1))
    assert_too_large(over, WEBHOOK_MAX_BODY)  # signed, but one byte too many
    assert over.upload.sent <= WEBHOOK_MAX_BODY + CHUNK

    fits = deliver(padded_event(call.livekit_room or "", WEBHOOK_MAX_BODY))
    assert fits.status == 200, fits.body[:300]
    assert json.loads(fits.body)["outcome"] == "room_finished"
    assert fits.upload.sent == WEBHOOK_MAX_BODY
    call.refresh_from_db()
    assert call.status == ConversationStatus.COMPLETED
    assert Conversation.objects.filter(pk=call.pk, ended_at__isnull=False).exists()

    # A page that is not one of the app's JSON endpoints is left to Django as it was.
    form = b"username=supervisor&password=" + b"x" * (2 * WEBHOOK_MAX_BODY)
    page = request(
        application,
        "POST",
        "/accounts/login/",
        form,
        headers=[("content-type", "application/x-www-form-urlencoded")],
        content_length=False,
    )
    assert page.status != 413
    assert page.upload.sent == len(form)
