"""Failed signatures of the LiveKit webhook and the recorder intake are throttled per
client address (``ratelimit.signature_refusal``), apart from the API's failed
credentials, without ever refusing a correctly signed delivery: LiveKit Cloud's egress,
or every client behind an uncounted proxy, can share its address with whoever sends bad
ones. Through the real endpoints and the Django test client.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from django.test import Client

from anyreach_listen.access import ratelimit
from anyreach_listen.conf import listen_settings
from anyreach_listen.models import ConversationStatus
from anyreach_listen.recorder.wire import sign
from tests.support.livekit import deliver_webhook, sign_webhook, webhook_event
from tests.support.world import TEST_LISTEN_SETTINGS, World

LIMIT = 3
WINDOW = 300
SENDER = "203.0.113.30"
OTHER = "203.0.113.31"
WRONG_SECRET = "not-the-secret-" + "x" * 32


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
    # A recorder's "registered" delivery would start a sweep of LiveKit's rooms.
    monkeypatch.setattr("anyreach_listen.recorder.dispatch.sweep_in_background", lambda: None)


# How a delivery is signed: correctly, with another secret, or not at all.
GOOD, BAD, UNSIGNED = "good", "bad", "unsigned"


def webhook(client: Client, how: str, room: str = "room-in_progress") -> Any:
    body = webhook_event("room_finished", room)
    secret = listen_settings.LIVEKIT_API_SECRET if how == GOOD else WRONG_SECRET
    auth = "" if how == UNSIGNED else sign_webhook(body, listen_settings.LIVEKIT_API_KEY, secret)
    return deliver_webhook(client, body, auth)


def recorder(client: Client, how: str) -> Any:
    body = json.dumps({"registered": "AW_1"}).encode()
    secret = listen_settings.LIVEKIT_API_SECRET if how == GOOD else WRONG_SECRET
    signed = sign(body, listen_settings.LIVEKIT_API_KEY, secret)
    headers = {} if how == UNSIGNED else {"Authorization": signed}
    return client.post(
        "/livekit/recorder", data=body, content_type="application/json", headers=headers
    )


DOORS: dict[str, Callable[[Client, str], Any]] = {"webhook": webhook, "recorder": recorder}
ACCEPTED = {"webhook": 200, "recorder": 202}


def assert_refused(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code


def use_up_the_limit(deliver: Callable[[Client, str], Any], sender: Client) -> None:
    for _ in range(LIMIT):
        assert_refused(deliver(sender, BAD), 401, "invalid_signature")


@pytest.mark.parametrize("door", DOORS)
def test_a_signed_delivery_from_a_blocked_address_is_accepted(world: World, door: str) -> None:
    deliver = DOORS[door]
    sender = Client(REMOTE_ADDR=SENDER)
    use_up_the_limit(deliver, sender)
    # The address is past the limit: its good deliveries still go through, every time.
    for _ in range(2):
        accepted = deliver(sender, GOOD)
        assert accepted.status_code == ACCEPTED[door], accepted.content


def test_a_signed_event_from_a_blocked_address_is_applied(world: World) -> None:
    # The reported harm: a lost room event. This one must move its conversation.
    call = world.conversations[ConversationStatus.IN_PROGRESS]
    sender = Client(REMOTE_ADDR=SENDER)
    use_up_the_limit(webhook, sender)
    assert webhook(sender, GOOD, call.livekit_room or "").json()["outcome"] == "room_finished"
    call.refresh_from_db()
    assert call.status == ConversationStatus.COMPLETED


@pytest.mark.parametrize("how", [BAD, UNSIGNED])
@pytest.mark.parametrize("door", DOORS)
def test_past_the_limit_a_bad_or_unsigned_delivery_is_429_instead_of_401(
    world: World, door: str, how: str
) -> None:
    deliver = DOORS[door]
    sender = Client(REMOTE_ADDR=SENDER)
    use_up_the_limit(deliver, sender)
    blocked = deliver(sender, how)
    assert_refused(blocked, 429, "rate_limited")
    assert blocked["Retry-After"] == str(WINDOW - 100)
    assert "failed signatures" in blocked.json()["error"]["message"]
    # Another sender is not in that bucket.
    assert_refused(deliver(Client(REMOTE_ADDR=OTHER), how), 401, "invalid_signature")


def test_the_webhook_and_the_intake_share_the_addresss_signature_count(world: World) -> None:
    sender = Client(REMOTE_ADDR=SENDER)
    for _ in range(LIMIT - 1):
        assert_refused(webhook(sender, BAD), 401, "invalid_signature")
    assert_refused(recorder(sender, BAD), 401, "invalid_signature")
    assert_refused(webhook(sender, BAD), 429, "rate_limited")
    assert_refused(recorder(sender, BAD), 429, "rate_limited")


def test_api_credentials_and_signatures_do_not_block_each_other(world: World) -> None:
    unknown_key = {"Authorization": "Bearer ak_000000000000_" + "x" * 43}
    good_key = {"Authorization": f"Bearer {world.secrets['ak_manage']}"}
    signatures = Client(REMOTE_ADDR=SENDER)
    use_up_the_limit(webhook, signatures)
    # The address's bad signatures leave its API credentials alone …
    assert_refused(
        signatures.get("/core/conversations", headers=unknown_key), 401, "invalid_credentials"
    )
    assert signatures.get("/core/conversations", headers=good_key).status_code == 200
    # … and its bad API credentials leave its signatures alone.
    guesser = Client(REMOTE_ADDR=OTHER)
    for _ in range(LIMIT):
        guesser.get("/core/conversations", headers=unknown_key)
    assert_refused(guesser.get("/core/conversations", headers=good_key), 429, "rate_limited")
    assert_refused(webhook(guesser, BAD), 401, "invalid_signature")
    assert webhook(guesser, GOOD).status_code == 200


def test_behind_a_proxy_the_address_the_proxy_saw_is_counted(world: World, settings: Any) -> None:
    settings.ANYREACH_LISTEN = {**settings.ANYREACH_LISTEN, "TRUSTED_PROXY_COUNT": 1}
    proxy = "10.0.0.2"
    for n in range(LIMIT):
        # A new address of its own on the left each time; the proxy appends the real one.
        spoofing = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}, {SENDER}")
        assert_refused(webhook(spoofing, BAD), 401, "invalid_signature")
    again = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=f"198.51.100.9, {SENDER}")
    assert_refused(webhook(again, BAD), 429, "rate_limited")
    # LiveKit, through the same proxy, is judged on its own address.
    livekit = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=OTHER)
    assert_refused(webhook(livekit, BAD), 401, "invalid_signature")
    assert webhook(livekit, GOOD).status_code == 200


@pytest.mark.parametrize("door", DOORS)
def test_without_a_cache_a_bad_signature_is_still_a_401(
    world: World, door: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cache_down(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("cache unavailable")

    monkeypatch.setattr(ratelimit, "hit", cache_down)
    sender = Client(REMOTE_ADDR=SENDER)
    for _ in range(LIMIT + 1):
        assert_refused(DOORS[door](sender, BAD), 401, "invalid_signature")
    assert DOORS[door](sender, GOOD).status_code == ACCEPTED[door]
