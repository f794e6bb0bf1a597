"""Minting through a remote Anyreach-compatible API (the contract's "mint from your backend").

The HTTP client for ``ANYREACH_LISTEN["REMOTE_MINT"]``; the API key stays on this server.
A usable answer is still checked by the grant (``minting.py``): the signature is not
ours to check (the remote's LiveKit secret signs it), but the audit row and the page
trust what the claims say, so they must say a listen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import httpx

from anyreach_listen.api.errors import ApiError, Errors

logger = logging.getLogger(__name__)

RESPONSE_FIELDS = ("url", "token", "room_name", "expires_at")
# The remote's own answer for these statuses reaches the page; unknown codes map here.
_PASSED_THROUGH = {404: Errors.CONVERSATION_NOT_FOUND, 409: Errors.CONVERSATION_NOT_ACTIVE}


def mint_remotely(config: dict[str, Any], conversation_id: str) -> dict[str, str]:
    base = str(config["URL"]).rstrip("/")
    url = f"{base}/core/conversations/{conversation_id}/listener-token"
    headers = {"Authorization": f"Bearer {config['API_KEY']}"}
    if config.get("ORGANIZATION"):
        headers["X-Anyreach-Org"] = str(config["ORGANIZATION"])
    retries = int(config.get("RETRIES", 2))
    backoff = float(config.get("BACKOFF", 0.25))
    timeout = httpx.Timeout(float(config.get("TIMEOUT", 5.0)))

    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        for attempt in range(retries + 1):
            try:
                response = client.post(url, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # Only failures before the request reached the platform are retried:
                # a timeout while it answers could mean a token was minted already.
                # Log the kind of failure only: the request carries the API key.
                logger.warning("remote mint attempt %d: %s", attempt + 1, type(exc).__name__)
                if attempt == retries:
                    raise _unavailable("could not be reached") from None
            except httpx.TransportError as exc:
                logger.warning("remote mint failed: %s", type(exc).__name__)
                raise _unavailable("did not answer in time") from None
            else:
                if response.status_code < 500 or attempt == retries:
                    return _interpret(response)
                logger.warning("remote mint attempt %d: HTTP %d", attempt + 1, response.status_code)
            time.sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")


# Video grants that let a token's holder do more than listen: administer, create, list
# or record rooms, move participants, act as an agent or recorder, rename itself.
PRIVILEGED_GRANTS = (
    "roomAdmin",
    "roomCreate",
    "roomList",
    "roomRecord",
    "ingressAdmin",
    "recorder",
    "agent",
    "destinationRoom",
    "canUpdateOwnMetadata",
    "canManageAgentSession",
)
EXPIRY_LEEWAY = 60  # seconds of clock skew between the remote and us
# The participant kinds a listener's token may claim: LiveKit reads none (or "") as standard.
LISTENER_KINDS = (None, "", "standard")


def listener_grant_problem(
    claims: Mapping[str, Any], *, identity_prefix: str, ttl: int, now: float
) -> str | None:
    """Why a remote token's (unverified) claims are not a listener token's; ``None``
    when they are. A listener's identity starts with ``identity_prefix``; its video grant
    is subscribe-only (``canPublish`` and ``canPublishData`` explicitly false: LiveKit
    reads an absent ``canPublish`` as true, an absent ``canPublishData`` as
    ``canPublish``) and hidden, with none of ``PRIVILEGED_GRANTS`` and no SIP grant; its
    participant ``kind`` is absent (or empty) or ``standard``, never an agent, egress,
    ingress or SIP participant; it expires at most ``ttl`` (LISTENER_TOKEN_TTL) +
    EXPIRY_LEEWAY seconds after ``now``. The reason names claims only, never the token."""
    identity = claims.get("sub")
    if not isinstance(identity, str) or not identity.startswith(identity_prefix):
        return f"identity {_shown(identity)} is not a listener's"
    video = claims.get("video")
    if not isinstance(video, Mapping):
        return "no video grant"
    for name, wanted in (("canPublish", False), ("canPublishData", False), ("hidden", True)):
        if video.get(name) is not wanted:
            return f"video grant {name} is {_shown(video.get(name))}, not {wanted}"
    granted = [name for name in PRIVILEGED_GRANTS if video.get(name)]
    if granted:
        return f"privileged video grant(s): {', '.join(granted)}"
    if claims.get("sip"):
        return "a SIP grant"
    if claims.get("kind") not in LISTENER_KINDS:
        return f"participant kind {_shown(claims.get('kind'))} is not a listener's"
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return f"exp {_shown(exp)} is not a time"
    if exp > now + ttl + EXPIRY_LEEWAY:
        return f"expires {exp - now:.0f} s from now, past the listener token lifetime ({ttl} s)"
    return None


def _shown(value: object) -> str:
    """A claim's value for the log: a remote chooses it, so its length is bounded."""
    return repr(value)[:80]


def refused_answer(conversation_id: object, why: str) -> ApiError:
    """The error for a well-formed answer that is not this listen's token, logged: the
    remote is misconfigured or not to be trusted. ``why`` names rooms or identities only,
    never the token."""
    logger.warning("remote mint answer refused for conversation %s: %s", conversation_id, why)
    return ApiError(Errors.REMOTE_MINT_INVALID)


def _unavailable(what: str) -> ApiError:
    return ApiError(
        Errors.REMOTE_UNAVAILABLE, f"The listening service {what}. Try again in a moment."
    )


def _interpret(response: httpx.Response) -> dict[str, str]:
    try:
        body = response.json()
    except ValueError:
        body = None
    ok = response.status_code == 200 and isinstance(body, dict)
    if ok and all(isinstance(body.get(name), str) for name in RESPONSE_FIELDS):
        return {name: body[name] for name in RESPONSE_FIELDS}
    if response.status_code in _PASSED_THROUGH and isinstance(body, dict):
        error = body.get("error") or {}
        kind = Errors.by_code(str(error.get("code")))
        if kind is None or kind.status != response.status_code:
            kind = _PASSED_THROUGH[response.status_code]
        raise ApiError(kind, str(error.get("message") or kind.message))
    if response.status_code == 429:
        retry_after = response.headers.get("Retry-After", "")
        raise ApiError(
            Errors.RATE_LIMITED,
            "The listening service is busy; try again shortly.",
            {"Retry-After": retry_after} if retry_after.isdigit() else None,
        )
    if response.status_code >= 500:
        raise _unavailable("is having trouble right now")
    logger.error("remote mint refused: HTTP %d", response.status_code)
    raise ApiError(Errors.REMOTE_REJECTED)
