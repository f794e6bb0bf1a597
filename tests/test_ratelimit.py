"""The fixed-window rate limit (``ratelimit.py``): counting per window, Retry-After,
separate buckets, and ``enforce``'s 429. The clock is the module's own ``time``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from anyreach_listen import ratelimit
from anyreach_listen.errors import ApiError, Errors
from anyreach_listen.ratelimit import RateDecision, enforce, hit
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
