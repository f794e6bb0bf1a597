"""Failed signatures of the LiveKit webhook and the recorder intake count toward the
per-address failed-credential throttle (``ratelimit.py``): after FAILED_AUTH_LIMIT bad
ones from an address, its deliveries are 429 ``rate_limited`` before any signature is
checked, a correctly signed one too, until the window ends; other addresses, and the
address behind a proxy that the proxy saw, are judged on their own.

Through the real endpoints and the Django test client.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from django.test import Client

from anyreach_listen import ratelimit
from anyreach_listen.conf import listen_settings
from anyreach_listen.recorder_intake import sign
from tests.support.livekit import deliver_webhook, sign_webhook, webhook_event
from tests.support.world import TEST_LISTEN_SETTINGS, World

LIMIT = 3
WINDOW = 300
SENDER = "203.0.113.30"
OTHER = "203.0.113.31"


@pytest.fixture(autouse=True)
def _limits(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.ANYREACH_LISTEN = {
        **TEST_LISTEN_SETTINGS,
        "FAILED_AUTH_LIMIT": LIMIT,
        "FAILED_AUTH_WINDOW": WINDOW,
    }
    # The bucket is a fixed window: stay inside one (100 s into it).
    start = 1_800_000_000 // WINDOW * WINDOW
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: start + 100.0))


def webhook(client: Client, good: bool) -> Any:
    body = webhook_event("room_finished", "room-in_progress")
    secret = listen_settings.LIVEKIT_API_SECRET if good else "not-the-secret-" + "x" * 32
    return deliver_webhook(
        client, body, sign_webhook(body, listen_settings.LIVEKIT_API_KEY, secret)
    )


def recorder(client: Client, good: bool) -> Any:
    body = json.dumps({"registered": "AW_1"}).encode()
    secret = listen_settings.LIVEKIT_API_SECRET if good else "not-the-secret-" + "x" * 32
    authorization = sign(body, listen_settings.LIVEKIT_API_KEY, secret)
    return client.post(
        "/livekit/recorder",
        data=body,
        content_type="application/json",
        headers={"Authorization": authorization},
    )


DOORS: dict[str, Callable[[Client, bool], Any]] = {"webhook": webhook, "recorder": recorder}


@pytest.mark.parametrize("door", DOORS)
def test_bad_signatures_from_an_address_end_in_429_before_verifying(
    world: World, door: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    deliver = DOORS[door]
    monkeypatch.setattr("anyreach_listen.recorder_dispatch.sweep_in_background", lambda: None)
    sender = Client(REMOTE_ADDR=SENDER)
    for _ in range(LIMIT):
        refused = deliver(sender, False)
        assert refused.status_code == 401, refused.content
        assert refused.json()["error"]["code"] == "invalid_signature"
    blocked = deliver(sender, True)  # even a good signature is not looked at now
    assert blocked.status_code == 429, blocked.content
    assert blocked.json()["error"]["code"] == "rate_limited"
    assert blocked["Retry-After"] == str(WINDOW - 100)
    # Another sender is not in that bucket.
    assert deliver(Client(REMOTE_ADDR=OTHER), True).status_code in (200, 202)


def test_the_webhook_and_the_api_share_the_addresss_count(world: World) -> None:
    sender = Client(REMOTE_ADDR=SENDER)
    for _ in range(LIMIT - 1):
        assert webhook(sender, False).status_code == 401
    unknown_key = {"Authorization": "Bearer ak_000000000000_" + "x" * 43}
    assert sender.get("/core/conversations", headers=unknown_key).status_code == 401
    assert webhook(sender, True).status_code == 429
    assert recorder(sender, True).status_code == 429


def test_behind_a_proxy_the_address_the_proxy_saw_is_counted(world: World, settings: Any) -> None:
    settings.ANYREACH_LISTEN = {**settings.ANYREACH_LISTEN, "TRUSTED_PROXY_COUNT": 1}
    proxy = "10.0.0.2"
    for n in range(LIMIT):
        # A new address of its own on the left each time; the proxy appends the real one.
        spoofing = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}, {SENDER}")
        assert webhook(spoofing, False).status_code == 401
    again = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=f"198.51.100.9, {SENDER}")
    assert webhook(again, True).status_code == 429
    # LiveKit, through the same proxy, still delivers.
    livekit = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=OTHER)
    assert webhook(livekit, True).status_code == 200
