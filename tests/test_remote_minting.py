"""Remote minting (``remote_minting.py``) against a scripted stand-in platform on a
local http.server: retries, backoff and how each answer is mapped. No LiveKit; the
portal minting through this project's own live API is in ``tests/e2e/``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from django.test import Client

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


def _token_body() -> bytes:
    token = jwt.encode({"sub": f"listener-{uuid.uuid4()}", "exp": 2_000_000_000}, "k" * 32)
    return json.dumps(
        {"url": "ws://lk", "token": token, "room_name": "r", "expires_at": "2033-05-18T03:33:20Z"}
    ).encode()


def test_5xx_is_retried_with_backoff(
    scripted_remote: Scripted, client: Client, settings: Any, db: None
) -> None:
    url, attempts, script = scripted_remote
    script += [(503, {}, b""), (502, {}, b""), (200, {}, _token_body())]
    remote(settings, url, "ak_secret_value", RETRIES=2)
    response = mint_as_supervisor(client, mirror(str(uuid.uuid4())))
    assert response.status_code == 200
    assert attempts == ["Bearer ak_secret_value"] * 3


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
