"""Web origins: validation and matching for embed allow-lists."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError


def normalize_origin(value: str) -> str | None:
    """``scheme://host[:port]`` in lower case, or None when ``value`` is not an origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def validate_origin_list(value: object) -> None:
    if not isinstance(value, list):
        raise ValidationError("Enter a list of origins such as https://example.com.")
    bad = [v for v in value if not isinstance(v, str) or normalize_origin(v) is None]
    if bad:
        raise ValidationError(
            f"Not an origin (scheme://host[:port], no path): {', '.join(map(str, bad))}."
        )
