"""The client's address: one rule for audit rows, rate limits, throttles and log lines.

Without trusted proxies (``TRUSTED_PROXY_COUNT`` 0, the default) the client is the
socket's peer; behind N proxies that append to ``X-Forwarded-For`` it is the entry the
outermost proxy wrote. Entries the client writes are never read, so no client chooses
its own address. The answer is always an IP address or ``None``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from django.http import HttpRequest

from anyreach_listen.conf import listen_settings


def client_address(request: HttpRequest) -> str | None:
    """The address of the client of ``request`` (also django-axes' AXES_CLIENT_IP_CALLABLE)."""
    return resolve(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR", ""))


def scope_client_address(scope: Mapping[str, Any]) -> str | None:
    """The address of the client of an ASGI (HTTP or websocket) connection."""
    client = scope.get("client")
    peer = str(client[0]) if client else None
    # Several header lines are one list, in order, as Django joins them for a request.
    forwarded = ",".join(
        value.decode("latin1")
        for name, value in scope.get("headers", ())
        if name.lower() == b"x-forwarded-for"
    )
    return resolve(peer, forwarded)


def resolve(peer: str | None, forwarded: str, proxies: int | None = None) -> str | None:
    """The client's address from the peer's and the ``X-Forwarded-For`` header's."""
    if proxies is None:
        proxies = trusted_proxy_count()
    if proxies > 0:
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if len(hops) >= proxies:
            found = parse(hops[-proxies])
            if found is not None:
                return found
    return parse(peer or "")


def trusted_proxy_count() -> int:
    count = listen_settings.TRUSTED_PROXY_COUNT
    # A wrong value is reported by the system check E018; meanwhile no header is trusted.
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0


def parse(value: str) -> str | None:
    """``value`` as a canonical IP address, or ``None`` when it is not one."""
    text = value.strip()
    if text.startswith("["):  # [v6] or [v6]:port
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # v4:port (a bare IPv6 address has two colons or more)
        text = text.partition(":")[0]
    text = text.partition("%")[0]  # an IPv6 zone names a local interface, not a client
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)
