"""One HTTP request to an ASGI application, driven by hand as a server would: the body in
chunks, with or without a ``Content-Length`` (a chunked body has none), counting how
much of it the application pulled."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

CHUNK = 64 * 1024  # daphne's default request buffer size


@dataclass
class Upload:
    """The request body as the server hands it over, in ``chunk``-sized messages."""

    body: bytes
    chunk: int = CHUNK
    sent: int = 0  # bytes the application received so far
    finished: bool = False

    async def receive(self) -> dict[str, Any]:
        if not self.finished:
            piece = self.body[self.sent : self.sent + self.chunk]
            self.sent += len(piece)
            self.finished = self.sent >= len(self.body)
            return {"type": "http.request", "body": piece, "more_body": not self.finished}
        # The body is over; the connection stays open until the application answers
        # (Django waits here for a disconnect and cancels the wait once it responded).
        await asyncio.get_running_loop().create_future()
        raise AssertionError("unreachable")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    upload: Upload
    messages: list[Mapping[str, Any]] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)


App = Callable[..., Awaitable[None]]


@contextmanager
def keeping_test_database() -> Iterator[None]:
    """As Django's test client does: a request does not close the test's connection
    (which would break the transaction each test runs in)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def request(
    app: App,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    headers: Sequence[tuple[str, str]] = (),
    content_length: bool = True,
    chunk: int = CHUNK,
    client: tuple[str, int] = ("203.0.113.40", 50123),
    root_path: str = "",
) -> Answer:
    """``method path`` with ``body`` through ``app``; the views run in this thread."""
    raw = [(name.lower().encode("latin1"), value.encode("latin1")) for name, value in headers]
    if content_length:
        raw.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,  # with the root path, as ASGI servers give it
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *raw],
        "client": client,
        "server": ("testserver", 80),
    }
    upload = Upload(body, chunk)
    messages: list[Mapping[str, Any]] = []

    async def send(message: Mapping[str, Any]) -> None:
        messages.append(message)

    async def run() -> None:
        await app(scope, upload.receive, send)

    with keeping_test_database():
        async_to_sync(run)()
    start = next(m for m in messages if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    names = {k.decode("latin1").lower(): v.decode("latin1") for k, v in start["headers"]}
    return Answer(start["status"], names, content, upload, messages)


# --- the app's JSON endpoints, each with its body limit ----------------------------------------

CSRF_SECRET = "k" * 32  # a CSRF cookie's secret; the header may repeat it unmasked


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    limit: int
    headers: tuple[tuple[str, str], ...]


ENDPOINTS = (
    "LiveKit webhook",
    "recorder intake",
    "create a conversation",
    "list conversations",
    "listener token",
    "push a transcript",
    "unknown API path",
    "portal token view",
)


def endpoint(world: Any, name: str) -> Endpoint:
    """One of ``ENDPOINTS``, with what gets a request past everything but its body's size
    (a valid API key, a CSRF cookie and header): refusing it is the limit's doing."""
    from anyreach_listen.api.body_limit import MAX_BODY, WEBHOOK_MAX_BODY

    call = world.conversations["in_progress"]
    json_type = ("content-type", "application/json")
    manage = (("authorization", f"Bearer {world.secrets['ak_manage']}"), json_type)
    read = (("authorization", f"Bearer {world.secrets['ak_read_sensitive']}"), json_type)
    csrf = (("cookie", f"csrftoken={CSRF_SECRET}"), ("x-csrftoken", CSRF_SECRET), json_type)
    return {
        "LiveKit webhook": Endpoint(
            "POST",
            "/livekit/webhook",
            WEBHOOK_MAX_BODY,
            (("authorization", "not-signed"), ("content-type", "application/webhook+json")),
        ),
        "recorder intake": Endpoint(
            "POST", "/livekit/recorder", MAX_BODY, (("authorization", "Bearer x"), json_type)
        ),
        "create a conversation": Endpoint("POST", "/core/conversations", MAX_BODY, manage),
        "list conversations": Endpoint("GET", "/core/conversations", MAX_BODY, manage),
        "listener token": Endpoint(
            "POST", f"/core/conversations/{call.pk}/listener-token", MAX_BODY, read
        ),
        "push a transcript": Endpoint(
            "POST", f"/core/conversations/{call.pk}/transcript", MAX_BODY, manage
        ),
        "unknown API path": Endpoint("POST", "/core/nothing-here", MAX_BODY, manage),
        "portal token view": Endpoint(
            "POST", f"/listen/conversations/{call.pk}/token", MAX_BODY, csrf
        ),
    }[name]


def json_body(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes."""
    return b'{"pad": "' + b"x" * (size - 11) + b'"}'


# --- what an oversized body gets -----------------------------------------------------------


def assert_too_large(status: int, headers: Mapping[str, str], body: bytes, limit: int) -> None:
    """A JSON 413 ``payload_too_large`` naming ``limit`` (``headers``: lower-case names, or
    a Django response's case-insensitive ones)."""
    from anyreach_listen.api.body_limit import describe

    assert status == 413, body[:300]
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"] == {
        "code": "payload_too_large",
        "message": f"The body is larger than {describe(limit)}.",
    }


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    logged = [(r.name, r.levelname, r.getMessage()) for r in caplog.records if r.exc_info]
    assert logged == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def refused_for_size(
    app: App,
    world: Any,
    name: str,
    size: int,
    *,
    content_length: bool,
    caplog: pytest.LogCaptureFixture,
) -> tuple[Endpoint, Answer]:
    """Endpoint ``name`` (``ENDPOINTS``) sent a JSON body of ``size`` bytes through ``app``:
    asserts the JSON 413 for its limit, logged without a traceback or an error."""
    target = endpoint(world, name)
    with caplog.at_level(logging.DEBUG):
        answer = request(
            app,
            target.method,
            target.path,
            json_body(size),
            headers=target.headers,
            content_length=content_length,
        )
    assert_too_large(answer.status, answer.headers, answer.body, target.limit)
    assert_no_traceback(caplog)
    return target, answer
