"""One JSON request to the REST API through Django's test client."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client

from anyreach_listen.access.policy import ORG_HEADER


def call(
    client: Client,
    method: str,
    path: str,
    secret: str | None,
    body: Any = None,
    org: str | None = None,
    **extra: Any,
) -> Any:
    """``method`` on ``path`` with a bearer ``secret`` (and ``org`` header); a str or
    bytes ``body`` is sent as is (malformed-input tests), anything else as JSON."""
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    if org:
        headers[ORG_HEADER] = org
    data = body if isinstance(body, str | bytes) else json.dumps(body) if body is not None else ""
    return getattr(client, method)(
        path, data=data, content_type="application/json", headers=headers, **extra
    )
