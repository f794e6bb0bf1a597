"""api/asgi.py's ``limit_body_size``, in the portal's real ASGI application (``config.asgi``):
an oversized body is refused while it arrives, before Django spools it, with or without
a Content-Length: a JSON endpoint's with its JSON 413, every other path's (pages, forms,
the admin, the login) past DATA_UPLOAD_MAX_MEMORY_SIZE with a plain-text 413; what fits
reaches Django whole.

Driven as daphne drives an application: the body in 64 KB messages; ``Upload.sent``
counts what the application pulled.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest

from anyreach_listen.api.body_limit import WEBHOOK_MAX_BODY, describe
from anyreach_listen.conf import listen_settings
from anyreach_listen.models import Conversation, ConversationStatus
from tests.support.asgi import (
    CHUNK,
    ENDPOINTS,
    Answer,
    assert_no_traceback,
    assert_too_large,
    json_body,
    refused_for_size,
    request,
)
from tests.support.livekit import sign_webhook, webhook_event
from tests.support.world import World

BIG = 3 * 1024 * 1024
DJANGOS_LIMIT = 2_621_440  # DATA_UPLOAD_MAX_MEMORY_SIZE's default


@pytest.fixture
def application() -> Any:
    # Imported late, and per test (the import is cached): Django is set up, and the test
    # settings (a LiveKit secret config.asgi accepts with DEBUG off) are in place.
    from config.asgi import application

    return application


def assert_refused_unread(answer: Answer, limit: int, content_length: bool) -> None:
    """A declared length is refused unread; a chunked body once it passed the limit."""
    assert answer.headers["connection"] == "close"  # the unread rest is no next request
    assert answer.upload.sent <= (0 if content_length else limit + CHUNK)


@pytest.mark.parametrize("content_length", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("name", ENDPOINTS)
def test_an_oversized_body_is_refused_while_it_arrives(
    world: World,
    application: Any,
    caplog: pytest.LogCaptureFixture,
    name: str,
    content_length: bool,
) -> None:
    target, answer = refused_for_size(
        application, world, name, BIG, content_length=content_length, caplog=caplog
    )
    assert_refused_unread(answer, target.limit, content_length)


def too_large(answer: Answer, limit: int) -> None:
    assert_too_large(answer.status, answer.headers, answer.body, limit)


def test_under_a_root_path_the_endpoint_is_found_too(world: World, application: Any) -> None:
    answer = request(
        application,
        "POST",
        "/portal/livekit/webhook",
        json_body(BIG),
        content_length=False,
        root_path="/portal",
    )
    too_large(answer, WEBHOOK_MAX_BODY)
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
    too_large(over, WEBHOOK_MAX_BODY)  # signed, but one byte too many
    assert over.upload.sent <= WEBHOOK_MAX_BODY + CHUNK

    fits = deliver(padded_event(call.livekit_room or "", WEBHOOK_MAX_BODY))
    assert fits.status == 200, fits.body[:300]
    assert json.loads(fits.body)["outcome"] == "room_finished"
    assert fits.upload.sent == WEBHOOK_MAX_BODY
    call.refresh_from_db()
    assert call.status == ConversationStatus.COMPLETED
    assert Conversation.objects.filter(pk=call.pk, ended_at__isnull=False).exists()

    # A page that is not one of the app's JSON endpoints reaches Django whole below
    # DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB), as it did before the default limit.
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


# --- every other path: DATA_UPLOAD_MAX_MEMORY_SIZE, a plain-text 413 -----------------------

FORM = ("content-type", "application/x-www-form-urlencoded")
PAGES = {
    "login": ("/accounts/login/", (FORM,)),
    "admin login": ("/admin/login/", (FORM,)),
    "portal form": (f"/organization/{uuid.uuid4()}/alert-rules/", (FORM,)),
    "portal page": ("/history/", (FORM,)),
    "unknown path": ("/no-such-page/", (("content-type", "application/json"),)),
}


def form_body(size: int) -> bytes:
    """A form of exactly ``size`` bytes."""
    return b"username=supervisor&password=" + b"x" * (size - 29)


def assert_plain_too_large(answer: Answer, limit: int) -> None:
    assert answer.status == 413, answer.body[:300]
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert answer.body == f"The body is larger than {describe(limit)}.\n".encode()
    assert answer.headers["content-length"] == str(len(answer.body))


@pytest.mark.parametrize("content_length", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("page", PAGES)
def test_every_other_path_refuses_a_body_past_djangos_limit_while_it_arrives(
    world: World,
    application: Any,
    caplog: pytest.LogCaptureFixture,
    page: str,
    content_length: bool,
) -> None:
    path, headers = PAGES[page]
    with caplog.at_level(logging.DEBUG):
        answer = request(
            application,
            "POST",
            path,
            form_body(BIG),
            headers=headers,
            content_length=content_length,
        )
    assert_plain_too_large(answer, DJANGOS_LIMIT)
    assert_refused_unread(answer, DJANGOS_LIMIT, content_length)
    assert_no_traceback(caplog)


@pytest.mark.parametrize("content_length", [True, False], ids=["content-length", "chunked"])
def test_the_default_limit_is_djangos_setting_and_exact(
    world: World, application: Any, settings: Any, content_length: bool
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096

    def post(size: int) -> Answer:
        return request(
            application,
            "POST",
            "/accounts/login/",
            form_body(size),
            headers=[FORM],
            content_length=content_length,
            chunk=1024,
        )

    over = post(4097)
    assert_plain_too_large(over, 4096)
    assert_refused_unread(over, 4096, content_length)
    fits = post(4096)
    assert fits.status != 413, fits.body[:300]
    assert fits.upload.sent == 4096


def test_no_default_limit_when_django_has_none(
    world: World, application: Any, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = None
    body = form_body(BIG)
    page = request(application, "POST", "/no-such-page/", body, headers=[FORM])
    assert page.status == 404
    assert page.upload.sent == len(body)
    # The JSON endpoints keep their own limits.
    webhook = request(application, "POST", "/livekit/webhook", json_body(BIG))
    too_large(webhook, WEBHOOK_MAX_BODY)
