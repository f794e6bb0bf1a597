"""Request bodies are bounded: each JSON endpoint takes a body up to its limit, and
refuses a larger one (413 ``payload_too_large``), never reading past limit + 1 bytes.

``read_limited`` does this for ``errors.endpoint`` before every view, because Django's
own ``request.body`` refuses a body over its limit with an exception inside the view,
answered as a 500. Under ASGI, ``asgi.py``'s ``limit_body_size`` refuses such a body
earlier, while it arrives.
"""

from __future__ import annotations

import io

from django.http import HttpRequest

KB = 1024
MB = 1024 * KB

MAX_BODY = 64 * KB  # the REST API, the portal's token view, the recorder intake
# LiveKit's events carry a room's and a participant's metadata and attributes, which
# LiveKit lets grow to tens of KB each: room for them, still small.
WEBHOOK_MAX_BODY = 1 * MB


class BodyTooLarge(Exception):
    """The body is over ``limit`` bytes (``errors.endpoint`` answers 413)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"The body is larger than {describe(limit)}.")


def describe(limit: int) -> str:
    """``limit`` bytes in words: 64 KB, 1 MB."""
    if limit % MB == 0:
        return f"{limit // MB} MB"
    if limit % KB == 0:
        return f"{limit // KB} KB"
    return f"{limit} bytes"


def declared_length(value: str | None) -> int | None:
    """A ``Content-Length`` value as a number; ``None`` when absent or malformed
    (Django joins repeated headers with commas): then the bytes read decide."""
    if value and value.isascii() and value.isdigit():
        return int(value)
    return None


def read_limited(request: HttpRequest, limit: int) -> bytes:
    """The request's body, at most ``limit`` bytes; ``BodyTooLarge`` past that."""
    if hasattr(request, "_body"):  # read already (by an earlier call, or Django's CSRF check)
        if len(request._body) > limit:
            raise BodyTooLarge(limit)
        return request._body
    length = declared_length(request.META.get("CONTENT_LENGTH"))
    if length is not None and length > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    while size <= limit:  # one byte past the limit tells a body that is over it
        chunk = request.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise BodyTooLarge(limit)
    body = b"".join(chunks)
    # Kept where Django keeps a body it read itself: request.body, request.POST and
    # a second call answer these bytes without reading the stream again.
    request._body = body
    request._stream = io.BytesIO(body)
    return body
