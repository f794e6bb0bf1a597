"""A fixed-window rate limit per credential, kept in Django's cache.

With several workers the cache must be shared (Redis or memcached) for the
limit to hold across them; the local-memory cache limits each process alone.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from django.core.cache import cache

from .conf import listen_settings
from .errors import ApiError, Errors


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after: int  # seconds until the window resets


def hit(bucket: str) -> RateDecision:
    limit = int(listen_settings.RATE_LIMIT_REQUESTS)
    window = int(listen_settings.RATE_LIMIT_WINDOW)
    now = time.time()
    window_index = int(now // window)
    key = f"anyreach-listen:rl:{bucket}:{window_index}"
    # add() is atomic: only the first request of a window creates the counter.
    if cache.add(key, 1, timeout=window + 1):
        count = 1
    else:
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=window + 1)
            count = 1
    retry_after = max(1, math.ceil((window_index + 1) * window - now))
    return RateDecision(allowed=count <= limit, retry_after=retry_after)


def enforce(bucket: str, what: str) -> None:
    """Count a request against ``bucket``; ApiError 429 with Retry-After when over."""
    decision = hit(bucket)
    if not decision.allowed:
        raise ApiError(
            Errors.RATE_LIMITED,
            f"Too many {what}; retry in {decision.retry_after} s.",
            {"Retry-After": str(decision.retry_after)},
        )
