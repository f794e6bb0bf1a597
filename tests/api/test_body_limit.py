"""body_limit.py with errors.endpoint: every JSON endpoint answers a body over its limit
with a JSON 413 ``payload_too_large``, with or without a Content-Length, and reads at
most one byte past the limit.

Through Django's own ASGI handler (no ``asgi.limit_body_size`` in front: that one is
``tests/api/test_asgi.py``), as daphne hands a request over: the body in 64 KB messages,
spooled by Django before the view runs. A body over Django's
DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) is the case that used to end in a 500.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.handlers.asgi import ASGIHandler, ASGIRequest

from anyreach_listen.api import views as api
from anyreach_listen.api.body_limit import MAX_BODY, WEBHOOK_MAX_BODY
from anyreach_listen.livekit import webhooks
from anyreach_listen.recorder import intake as recorder_intake
from tests.support.asgi import (
    ENDPOINTS,
    assert_too_large,
    endpoint,
    json_body,
    refused_for_size,
    request,
)
from tests.support.world import World

PAST_DJANGOS_LIMIT = 3 * 1024 * 1024


@pytest.fixture(scope="module")
def django_app() -> ASGIHandler:
    return ASGIHandler()


@pytest.mark.parametrize("content_length", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("name", ENDPOINTS)
def test_a_body_past_djangos_upload_limit_is_a_json_413(
    world: World,
    django_app: ASGIHandler,
    caplog: pytest.LogCaptureFixture,
    name: str,
    content_length: bool,
) -> None:
    refused_for_size(
        django_app, world, name, PAST_DJANGOS_LIMIT, content_length=content_length, caplog=caplog
    )


@pytest.mark.parametrize("content_length", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("name", ENDPOINTS)
def test_the_limit_is_each_endpoints_own(
    world: World, django_app: ASGIHandler, name: str, content_length: bool
) -> None:
    target = endpoint(world, name)

    def send(size: int) -> Any:
        return request(
            django_app,
            target.method,
            target.path,
            json_body(size),
            headers=target.headers,
            content_length=content_length,
        )

    over = send(target.limit + 1)
    assert_too_large(over.status, over.headers, over.body, target.limit)
    at = send(target.limit)  # refused for what it says, if at all, never for its size
    assert at.status != 413, at.body[:300]
    assert at.status < 500, at.body[:300]


class CountingStream(io.BytesIO):
    """A request body that counts the bytes read from it."""

    taken = 0

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.taken += len(data)
        return data

    def readline(self, size: int | None = -1, /) -> bytes:
        data = super().readline(size)
        self.taken += len(data)
        return data


VIEWS = {
    "LiveKit webhook": (webhooks.livekit_webhook, "/livekit/webhook", WEBHOOK_MAX_BODY),
    "recorder intake": (recorder_intake.recorder_delivery, "/livekit/recorder", MAX_BODY),
    "create a conversation": (api.conversation_collection, "/core/conversations", MAX_BODY),
}


@pytest.mark.parametrize("name", VIEWS)
def test_a_view_reads_at_most_one_byte_past_its_limit(world: World, name: str) -> None:
    view, path, limit = VIEWS[name]
    # Under Django's 2.5 MB: Django alone would read all of it.
    body = json_body(2 * 1024 * 1024)
    for content_length, most in ((False, limit + 1), (True, 0)):
        headers = [(b"content-type", b"application/json"), (b"authorization", b"Bearer x")]
        if content_length:
            headers.append((b"content-length", str(len(body)).encode()))
        stream = CountingStream(body)
        scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
        response = view(ASGIRequest(scope, stream))
        assert_too_large(response.status_code, response.headers, response.content, limit)
        assert stream.taken <= most, (content_length, stream.taken)
