"""The fixed-window rate limit (``ratelimit.py``): counting per window, Retry-After,
separate buckets, ``enforce``'s 429, and the failed-credential limit per client
address (through the API: test_access_api_throttle.py). The clock is the module's
own ``time``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from django.test import RequestFactory

from anyreach_listen.access import ratelimit
from anyreach_listen.access.ratelimit import (
    RateDecision,
    client_bucket,
    count_failed_credential,
    enforce,
    hit,
    peek,
    refuse_blocked_client,
)
from anyreach_listen.api.errors import ApiError, Errors
from tests.support.world import TEST_LISTEN_SETTINGS

WINDOW = 60
START = 1_800_000_000 // WINDOW * WINDOW  # the first second of a window


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Clock:
    settings.ANYREACH_LISTEN = {
        **TEST_LISTEN_SETTINGS,
        "RATE_LIMIT_REQUESTS": 3,
        "RATE_LIMIT_WINDOW": WINDOW,
    }
    fake = Clock(START + 10)
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=fake.time))
    return fake


def test_the_limit_counts_requests_in_one_window(clock: Clock) -> None:
    assert [hit("ak:1").allowed for _ in range(5)] == [True, True, True, False, False]


def test_a_new_window_starts_from_zero(clock: Clock) -> None:
    assert [hit("ak:1").allowed for _ in range(4)] == [True, True, True, False]
    clock.now = START + WINDOW - 0.001  # still the same window
    assert hit("ak:1").allowed is False
    clock.now = START + WINDOW  # the next window, although the old counter has not expired
    assert [hit("ak:1").allowed for _ in range(4)] == [True, True, True, False]


def test_a_fixed_window_allows_a_burst_across_its_edge(clock: Clock) -> None:
    # The documented trade-off of a fixed window: up to twice the limit around an edge.
    clock.now = START + WINDOW - 1
    assert [hit("ak:1").allowed for _ in range(3)] == [True] * 3
    clock.now = START + WINDOW
    assert [hit("ak:1").allowed for _ in range(3)] == [True] * 3


@pytest.mark.parametrize(
    ("offset", "retry_after"),
    [
        (0, 60),  # the first second of a window: the whole window to wait
        (0.2, 60),  # rounded up, never down
        (15, 45),
        (59, 1),
        (59.9, 1),  # never 0: a client told "0" would retry at once
    ],
)
def test_retry_after_is_the_rest_of_the_window(
    clock: Clock, offset: float, retry_after: int
) -> None:
    clock.now = START + offset
    assert hit("ak:1") == RateDecision(allowed=True, retry_after=retry_after)


def test_buckets_are_counted_separately(clock: Clock) -> None:
    assert [hit("ak:1").allowed for _ in range(4)] == [True, True, True, False]
    assert hit("ak:2").allowed is True
    assert hit("pat:1").allowed is True  # same id, another kind of credential
    assert hit("user:1").allowed is True
    assert hit("ak:1").allowed is False


def test_the_limit_and_window_come_from_settings(clock: Clock, settings: Any) -> None:
    settings.ANYREACH_LISTEN = {
        **TEST_LISTEN_SETTINGS,
        "RATE_LIMIT_REQUESTS": 1,
        "RATE_LIMIT_WINDOW": 10,
    }
    clock.now = START + 3  # START is a multiple of 10 as well
    assert hit("ak:1") == RateDecision(allowed=True, retry_after=7)
    assert hit("ak:1") == RateDecision(allowed=False, retry_after=7)
    clock.now = START + 10
    assert hit("ak:1").allowed is True


def test_a_counter_that_expires_between_add_and_incr_starts_again(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored: dict[str, Any] = {}

    class ExpiringCache:
        def add(self, key: str, value: int, timeout: int) -> bool:
            return False  # another request created the counter...

        def incr(self, key: str) -> int:
            raise ValueError(key)  # ...and it expired before this one counted

        def set(self, key: str, value: int, timeout: int) -> None:
            stored[key] = (value, timeout)

    monkeypatch.setattr(ratelimit, "cache", ExpiringCache())
    assert hit("ak:1") == RateDecision(allowed=True, retry_after=50)
    assert list(stored.values()) == [(1, WINDOW + 1)]
    assert list(stored) == [f"anyreach-listen:rl:ak:1:{START // WINDOW}"]


def test_enforce_counts_and_raises_a_429_with_retry_after(clock: Clock) -> None:
    for _ in range(3):
        enforce("ak:1", "requests for this credential")
    clock.now = START + 45.5
    with pytest.raises(ApiError) as refused:
        enforce("ak:1", "requests for this credential")
    error = refused.value
    assert error.kind is Errors.RATE_LIMITED and error.status == 429
    assert error.headers == {"Retry-After": "15"}
    assert error.message == "Too many requests for this credential; retry in 15 s."
    response = error.as_response()
    assert response.status_code == 429 and response["Retry-After"] == "15"
    enforce("ak:2", "requests for this credential")  # another bucket is untouched


def test_an_explicit_limit_and_window_override_the_settings(clock: Clock) -> None:
    clock.now = START + 10
    assert [hit("x:1", limit=1, window=30).allowed for _ in range(2)] == [True, False]
    assert hit("x:1", limit=1, window=30).retry_after == 20
    assert hit("x:2").allowed is True  # the default limit of 3 for another bucket


def test_peek_reads_without_counting(clock: Clock) -> None:
    assert peek("x:1", 2, WINDOW) == RateDecision(allowed=True, retry_after=50)
    assert peek("x:1", 2, WINDOW).allowed is True  # peeking twice counted nothing
    hit("x:1", 2, WINDOW)
    assert peek("x:1", 2, WINDOW).allowed is True
    hit("x:1", 2, WINDOW)
    assert peek("x:1", 2, WINDOW) == RateDecision(allowed=False, retry_after=50)
    clock.now = START + WINDOW
    assert peek("x:1", 2, WINDOW).allowed is True


def _request(address: str | None) -> Any:
    request = RequestFactory().get("/")
    if address is None:
        del request.META["REMOTE_ADDR"]
    else:
        request.META["REMOTE_ADDR"] = address
    return request


@pytest.mark.parametrize(
    ("address", "bucket"),
    [
        ("198.51.100.4", "authfail:198.51.100.4"),
        ("::ffff:198.51.100.4", "authfail:198.51.100.4"),  # a dual-stack socket's IPv4 client
        ("2001:db8:1:2:3:4:5:6", "authfail:2001:db8:1:2::/64"),
        ("2001:DB8:1:2::9", "authfail:2001:db8:1:2::/64"),
        ("::1", "authfail:::/64"),
        ("", "authfail:unknown"),
        ("not-an-address", "authfail:unknown"),
        (None, "authfail:unknown"),
    ],
)
def test_client_bucket_is_an_ipv4_address_or_an_ipv6_64(address: str | None, bucket: str) -> None:
    assert client_bucket(_request(address)) == bucket


def test_failed_credentials_block_the_address_after_the_limit(clock: Clock, settings: Any) -> None:
    settings.ANYREACH_LISTEN = {
        **TEST_LISTEN_SETTINGS,
        "FAILED_AUTH_LIMIT": 2,
        "FAILED_AUTH_WINDOW": WINDOW,
    }
    attacker, neighbour = _request("198.51.100.4"), _request("198.51.100.5")
    for _ in range(2):
        refuse_blocked_client(attacker)  # checking alone never blocks
        count_failed_credential(attacker)
    with pytest.raises(ApiError) as refused:
        refuse_blocked_client(attacker)
    assert refused.value.kind is Errors.RATE_LIMITED
    assert refused.value.headers == {"Retry-After": "50"}
    assert refused.value.message == "Too many failed credentials from this address; retry in 50 s."
    refuse_blocked_client(neighbour)
    # The per-credential limit is another bucket: requests of a key are still allowed.
    assert hit("ak:1").allowed is True
