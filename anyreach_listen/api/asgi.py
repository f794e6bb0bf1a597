"""ASGI middleware for the host project's ``asgi.py``: body limits enforced while the
body arrives, before Django spools it.

Django's ASGI handler reads a whole request body into a temporary file before any view
runs, whatever its size. ``limit_body_size`` refuses an oversized body (413) as it
arrives instead: a JSON endpoint's body past that endpoint's limit, any other path's
past ``DATA_UPLOAD_MAX_MEMORY_SIZE``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import get_script_prefix
from django.urls import Resolver404, resolve

from anyreach_listen.api.body_limit import BodyTooLarge, declared_length
from anyreach_listen.api.errors import ApiError, Errors

# As django-stubs types Django's ASGIHandler, the application wrapped.
Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def limit_body_size(app: ASGIApp) -> ASGIApp:
    """``app`` (the host's Django HTTP application) behind the body limits."""

    async def bounded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        limit = endpoint_limit(scope)
        as_json = limit is not None
        if limit is None:
            limit = default_limit()
            if limit is None:
                await app(scope, receive, send)
                return
        if (_content_length(scope) or 0) > limit:
            await _refuse(send, limit, as_json)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before its body ended: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _refuse(send, limit, as_json)  # the rest is never read
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        pending: list[Message] = [
            {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        ]

        async def replay() -> Message:
            # The body read here first, then the connection's own messages (disconnect).
            return pending.pop() if pending else await receive()

        await app(scope, replay, send)

    return bounded


def endpoint_limit(scope: Scope) -> int | None:
    """The body limit of the endpoint the request's path resolves to; ``None`` for a
    path that is not one of the app's JSON endpoints."""
    path = str(scope.get("path", ""))
    prefix = get_script_prefix(scope).rstrip("/")  # as Django's ASGIRequest strips it
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        path = path[len(prefix) :]
    try:
        match = resolve(path or "/")
    except Resolver404:
        return None
    limit = getattr(match.func, "max_body", None)
    return limit if isinstance(limit, int) else None


def default_limit() -> int | None:
    """The limit of every path that is not a JSON endpoint: Django's
    ``DATA_UPLOAD_MAX_MEMORY_SIZE``, read per request; ``None`` for no limit."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return int(limit) if limit is not None else None


def _content_length(scope: Scope) -> int | None:
    values = [v for name, v in scope.get("headers", ()) if name.lower() == b"content-length"]
    return declared_length(values[0].decode("latin1")) if len(values) == 1 else None


async def _refuse(send: Send, limit: int, as_json: bool) -> None:
    message = str(BodyTooLarge(limit))
    if as_json:
        response = ApiError(Errors.PAYLOAD_TOO_LARGE, message).as_response()
        content, headers = response.content, list(response.items())
    else:
        content = f"{message}\n".encode()
        headers = [("Content-Type", "text/plain; charset=utf-8")]
    raw = [(name.encode("latin1"), value.encode("latin1")) for name, value in headers]
    raw += [
        (b"content-length", str(len(content)).encode()),
        # The unread rest of the body must not be taken for the connection's next request.
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": raw})
    await send({"type": "http.response.body", "body": content})
