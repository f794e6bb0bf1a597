"""Fixed-window rate limits kept in Django's cache.

One mechanism for four limits: requests per credential (or signed-in user), reads per
credential, failed bearer credentials per client address, and failed webhook and
recorder signatures per client address. With several workers the cache must be shared
for a limit to hold across them.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from dataclasses import dataclass

from django.core.cache import cache
from django.http import HttpRequest

from anyreach_listen.access.client_address import client_address
from anyreach_listen.api.errors import ApiError, Errors
from anyreach_listen.conf import listen_settings

logger = logging.getLogger(__name__)

# An IPv6 client usually owns a whole /64: counting single addresses would let it
# rotate through them.
IPV6_PREFIX = 64


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after: int  # seconds until the window resets


def _window(bucket: str, window: int) -> tuple[str, int]:
    """The counter's cache key in the current window, and the seconds left in it."""
    now = time.time()
    window_index = int(now // window)
    retry_after = max(1, math.ceil((window_index + 1) * window - now))
    return f"anyreach-listen:rl:{bucket}:{window_index}", retry_after


def _count(key: str, window: int) -> int:
    # add() is atomic: only the first request of a window creates the counter.
    if cache.add(key, 1, timeout=window + 1):
        return 1
    try:
        return int(cache.incr(key))
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window + 1)
        return 1


def hit(bucket: str, limit: int | None = None, window: int | None = None) -> RateDecision:
    """Count one request against ``bucket``; allowed while the count is within ``limit``.

    ``limit`` and ``window`` default to RATE_LIMIT_REQUESTS and RATE_LIMIT_WINDOW.
    """
    limit = int(listen_settings.RATE_LIMIT_REQUESTS if limit is None else limit)
    window = int(listen_settings.RATE_LIMIT_WINDOW if window is None else window)
    key, retry_after = _window(bucket, window)
    return RateDecision(allowed=_count(key, window) <= limit, retry_after=retry_after)


def peek(bucket: str, limit: int, window: int) -> RateDecision:
    """Whether one more event fits in ``bucket``'s window, without counting it."""
    key, retry_after = _window(bucket, window)
    return RateDecision(allowed=int(cache.get(key, 0)) < limit, retry_after=retry_after)


def enforce(bucket: str, what: str) -> None:
    """Count a request against ``bucket``; ApiError 429 with Retry-After when over."""
    decision = hit(bucket)
    if not decision.allowed:
        raise _too_many(what, decision)


def enforce_reads(bucket: str) -> None:
    """Count a transcript, alert or rule read against ``bucket``'s own read limit
    (READ_RATE_LIMIT_*): a client paging through reads never uses up its minting and
    write limit, nor the other way round. ApiError 429 with Retry-After when over."""
    decision = hit(
        f"read:{bucket}",
        int(listen_settings.READ_RATE_LIMIT_REQUESTS),
        int(listen_settings.READ_RATE_LIMIT_WINDOW),
    )
    if not decision.allowed:
        raise _too_many("reads for this credential", decision)


def _too_many(what: str, decision: RateDecision) -> ApiError:
    return ApiError(
        Errors.RATE_LIMITED,
        f"Too many {what}; retry in {decision.retry_after} s.",
        {"Retry-After": str(decision.retry_after)},
    )


# --- failed bearer credentials per client address ---------------------------------------


FAILED_CREDENTIALS = "authfail"  # the API's bearer credentials
FAILED_SIGNATURES = "sigfail"  # the webhook's and the recorder intake's signatures


def client_bucket(request: HttpRequest, kind: str = FAILED_CREDENTIALS) -> str:
    """The ``kind`` bucket of the request's client address: an IPv4 address or an
    IPv6 /64.

    The address is the one the audit records (``client_address.py``): behind
    ``TRUSTED_PROXY_COUNT`` proxies, never an entry the client wrote itself.
    """
    found = client_address(request)  # ::ffff:a.b.c.d is already the IPv4 client a.b.c.d
    if found is None:
        return f"{kind}:unknown"
    address = ipaddress.ip_address(found)
    if isinstance(address, ipaddress.IPv6Address):
        network = ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False)
        return f"{kind}:{network.network_address}/{IPV6_PREFIX}"
    return f"{kind}:{address}"


def _failure_limit() -> tuple[int, int]:
    return int(listen_settings.FAILED_AUTH_LIMIT), int(listen_settings.FAILED_AUTH_WINDOW)


def refuse_blocked_client(request: HttpRequest) -> None:
    """ApiError 429 when the client's address used up its failed credentials."""
    limit, window = _failure_limit()
    decision = peek(client_bucket(request), limit, window)
    if not decision.allowed:
        raise _too_many("failed credentials from this address", decision)


def count_failed_credential(request: HttpRequest) -> None:
    """Count a refused bearer credential against the client's address."""
    limit, window = _failure_limit()
    hit(client_bucket(request), limit, window)


# --- failed signatures of signed deliveries per client address ---------------------------
#
# The LiveKit webhook and the recorder intake verify a delivery's signature before any
# throttle is consulted: an HMAC, cheap, and not to be guessed online. A correctly signed
# delivery is never refused here, whoever shares its sender's address (LiveKit Cloud's
# egress, every client behind a proxy not counted in TRUSTED_PROXY_COUNT). A bad
# signature counts against its address in a bucket of its own, apart from the API's
# failed credentials, so neither kind of failure blocks the other; past
# FAILED_AUTH_LIMIT the address's bad deliveries get 429 instead of 401. Best effort: a
# cache outage answers the 401 without counting.


def signature_refusal(request: HttpRequest, refused: ApiError) -> ApiError:
    """Count a delivery's bad signature against its address; the error to answer:
    ``refused`` (401), or 429 with Retry-After once the address is past the limit."""
    limit, window = _failure_limit()
    try:
        decision = hit(client_bucket(request, FAILED_SIGNATURES), limit, window)
    except Exception as exc:
        logger.warning("Failed-signature throttle unavailable: %s", type(exc).__name__)
        return refused
    if decision.allowed:
        return refused
    return _too_many("failed signatures from this address", decision)
