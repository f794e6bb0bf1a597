"""ASGI middleware for the host project's ``asgi.py``: endpoint body limits enforced
while the body arrives, before Django spools it.

Django's ASGI handler reads the whole request body into a temporary file (memory,
then disk) before any view runs, whatever its size. ``limit_body_size`` wraps the
HTTP application: for a path that resolves to one of the app's JSON endpoints (an
``errors.endpoint`` view, which carries its ``max_body``), it answers 413
``payload_too_large`` as soon as the declared ``Content-Length`` or the bytes received
pass the limit, and stops reading; a body within the limit is handed to Django whole.
Other paths pass through untouched.

What comes before the application is the server's: daphne (Twisted) receives a
whole body into its own temporary file before it calls the application, so under
daphne this bounds Django's copy, not daphne's; a reverse proxy's body limit (nginx
``client_max_body_size``) bounds what reaches daphne at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from django.core.handlers.asgi import get_script_prefix
from django.urls import Resolver404, resolve

from .body_limit import BodyTooLarge, declared_length
from .errors import ApiError, Errors

# As django-stubs types Django's ASGIHandler, the application wrapped.
Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def limit_body_size(app: ASGIApp) -> ASGIApp:
    """``app`` (the host's Django HTTP application) behind the endpoints' body limits."""

    async def bounded(scope: Scope, receive: Receive, send: Send) -> None:
        limit = endpoint_limit(scope) if scope["type"] == "http" else None
        if limit is None:
            await app(scope, receive, send)
            return
        if (_content_length(scope) or 0) > limit:
            await _refuse(send, limit)
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
                await _refuse(send, limit)  # the rest is never read
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


def _content_length(scope: Scope) -> int | None:
    values = [v for name, v in scope.get("headers", ()) if name.lower() == b"content-length"]
    return declared_length(values[0].decode("latin1")) if len(values) == 1 else None


async def _refuse(send: Send, limit: int) -> None:
    response = ApiError(Errors.PAYLOAD_TOO_LARGE, str(BodyTooLarge(limit))).as_response()
    headers = [(name.encode("latin1"), value.encode("latin1")) for name, value in response.items()]
    headers += [
        (b"content-length", str(len(response.content)).encode()),
        # The unread rest of the body must not be taken for the connection's next request.
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})
