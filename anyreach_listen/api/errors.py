"""Errors as data: every error the app answers with, and the one JSON shape they take.

``Errors`` is the registry (status, stable code, message, when it happens): code raises
its entries through ``ApiError``, and the OpenAPI document and docs/api/errors.md's table
are generated from it, so docs cannot drift from the code. ``endpoint`` wraps every JSON
endpoint so that each answers in that shape, an unexpected failure included.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from anyreach_listen.api.body_limit import MAX_BODY, BodyTooLarge, read_limited

logger = logging.getLogger(__name__)

# Where an error can be answered; the OpenAPI document lists the API's.
API = "api"  # the listener-token API (and every path under /core/)
PORTAL = "portal"  # the signed-in token view /listen/conversations/<id>/token
WEBHOOK = "webhook"  # POST /livekit/webhook
RECORDER = "recorder"  # POST /livekit/recorder: the transcript recorders' deliveries (internal)


@dataclass(frozen=True)
class ErrorKind:
    status: int
    code: str
    message: str  # the default human message; a raise may say more
    when: str  # for the docs: when this error is answered
    surfaces: frozenset[str]


def _kind(status: int, code: str, message: str, when: str, *surfaces: str) -> ErrorKind:
    return ErrorKind(status, code, message, when, frozenset(surfaces))


class Errors:
    """The registry, in the order the API checks a request."""

    MISSING_CREDENTIALS = _kind(
        401,
        "missing_credentials",
        "Send Authorization: Bearer <ak_… or pat_…>.",
        "no `Authorization: Bearer` credential (every 401 has `WWW-Authenticate: Bearer`)",
        API,
    )
    INVALID_CREDENTIALS = _kind(
        401,
        "invalid_credentials",
        "The bearer token is not recognized.",
        "a malformed or unknown credential, or a PAT of an inactive user",
        API,
    )
    CREDENTIALS_REVOKED = _kind(
        401,
        "credentials_revoked",
        "This credential has been revoked.",
        "a revoked credential",
        API,
    )
    CREDENTIALS_EXPIRED = _kind(
        401,
        "credentials_expired",
        "This credential has expired.",
        "an expired credential",
        API,
    )
    NOT_AUTHENTICATED = _kind(
        401, "not_authenticated", "Sign in to listen.", "nobody is signed in", PORTAL
    )
    MISSING_ORGANIZATION = _kind(
        400,
        "missing_organization",
        "Personal access tokens need the X-Anyreach-Org header.",
        "a `pat_` token without `X-Anyreach-Org`",
        API,
    )
    INVALID_ORGANIZATION = _kind(
        400,
        "invalid_organization",
        "X-Anyreach-Org must be an organization id.",
        "`X-Anyreach-Org` is not an organization id",
        API,
    )
    ORGANIZATION_MISMATCH = _kind(
        403,
        "organization_mismatch",
        "This API key belongs to another organization.",
        "an `ak_` key with `X-Anyreach-Org` of another organization",
        API,
    )
    NOT_A_MEMBER = _kind(
        403,
        "not_a_member",
        "You are not a member of this organization.",
        "a `pat_` naming an organization its user does not belong to",
        API,
    )
    RATE_LIMITED = _kind(
        429,
        "rate_limited",
        "Too many requests; retry later.",
        "per-credential (or per-user) limit reached, or too many failed credentials from "
        "the client's address (`Retry-After` in seconds)",
        API,
        PORTAL,
        WEBHOOK,  # an unsigned or badly signed delivery from an address with too many
        RECORDER,  # failed signatures (a bucket of their own); a signed one never
    )
    INSUFFICIENT_SCOPE = _kind(
        403,
        "insufficient_scope",
        "Needs the conversations:read_sensitive or conversations:manage scope.",
        "the credential lacks the operation's scope: `conversations:read_sensitive` or "
        "`conversations:manage` to listen, see who listens, or read transcripts, alerts and "
        "guidance, `conversations:manage` to write or manage alert rules, "
        "`conversations:guide` to guide the agent, any conversation scope but "
        "`conversations:guide` to read conversations (for a PAT: after intersecting with "
        "the user's role)",
        API,
    )
    CONVERSATION_NOT_FOUND = _kind(
        404,
        "conversation_not_found",
        "No such conversation.",
        "unknown id, not a UUID, another organization's conversation, or (for a PAT) a team "
        "the user cannot see. Indistinguishable on purpose",
        API,
        PORTAL,
        RECORDER,
    )
    UNSUPPORTED_MEDIA_TYPE = _kind(
        415,
        "unsupported_media_type",
        "Send the body as JSON with Content-Type: application/json.",
        "a request body whose `Content-Type` is not `application/json` (parameters such as "
        "`; charset=utf-8` are fine; a request without a body needs none)",
        API,
        RECORDER,
    )
    INVALID_JSON = _kind(
        400,
        "invalid_json",
        "The body must be a JSON object.",
        "a body that is not JSON, or JSON that is not an object",
        API,
        RECORDER,
    )
    UNKNOWN_FIELD = _kind(
        400, "unknown_field", "Unknown field.", "a field the endpoint does not take", API, RECORDER
    )
    INVALID_FIELD = _kind(
        400,
        "invalid_field",
        "A field has the wrong type or size.",
        "a field or query parameter of the wrong type, size or value (the message names it)",
        API,
        RECORDER,
    )
    INVALID_TEAM = _kind(
        400,
        "invalid_team",
        "team_id is not a team of this organization.",
        "`team_id` is not a team of the caller's organization",
        API,
    )
    PAYLOAD_TOO_LARGE = _kind(
        413,
        "payload_too_large",
        "The body is larger than this endpoint takes.",
        "a body over the endpoint's limit (64 KB; 1 MB for the LiveKit webhook), with or "
        "without `Content-Length`",
        API,
        PORTAL,
        WEBHOOK,
        RECORDER,
    )
    ROOM_NOT_OWNED = _kind(
        403,
        "room_not_owned",
        "This room belongs to another organization.",
        "`room_name` is a LiveKit room whose metadata names another organization, or lies "
        "outside the organization's room-name prefix",
        API,
    )
    ROOM_IN_USE = _kind(
        409,
        "room_in_use",
        "An active conversation already uses this room.",
        "`room_name` is already the room of an active conversation, or was used by another "
        "organization in the last 24 hours",
        API,
    )
    TOO_MANY_RULES = _kind(
        409,
        "too_many_rules",
        "The organization has the most active alert rules it may have.",
        "creating an alert rule when the organization already has `MAX_ALERT_RULES` active ones",
        API,
    )
    INVALID_TRANSITION = _kind(
        409,
        "invalid_transition",
        "A conversation's status only moves forward.",
        "a status change that is not forward (the message names the current status), or a "
        "`room_name` change once one is set",
        API,
    )
    TRANSCRIPT_CLOSED = _kind(
        409,
        "transcript_closed",
        "The conversation ended too long ago to add to its transcript.",
        "transcript segments for a conversation that ended more than `TRANSCRIPT_LATE_SECONDS` ago",
        API,
        RECORDER,
    )
    ALERT_RULE_NOT_FOUND = _kind(
        404,
        "alert_rule_not_found",
        "No such alert rule.",
        "unknown or deleted alert rule id, not a UUID, or another organization's rule",
        API,
    )
    LISTEN_NOT_ALLOWED = _kind(
        403,
        "listen_not_allowed",
        "Your role can see this call but not listen.",
        "the signed-in user may see the call but their role cannot listen",
        PORTAL,
    )
    CONVERSATION_NOT_ACTIVE = _kind(
        409,
        "conversation_not_active",
        "Only triggered, ringing or in-progress calls can be listened to.",
        "not triggered, ringing or in progress",
        API,
        PORTAL,
    )
    AGENT_NOT_PRESENT = _kind(
        409,
        "agent_not_present",
        "The call has no AI agent in its room to guide.",
        "guidance for a live call whose LiveKit room has no agent participant (or no room), "
        "or when LiveKit cannot be asked who is in it (nothing was sent or recorded: retry)",
        API,
        PORTAL,
    )
    ROOM_NOT_FOUND = _kind(
        404,
        "room_not_found",
        "The conversation has no LiveKit room.",
        "the conversation is active but has no LiveKit room",
        API,
        PORTAL,
    )
    METHOD_NOT_ALLOWED = _kind(
        405,
        "method_not_allowed",
        "This method is not allowed here.",
        "a method the endpoint does not take (`Allow` names the ones it does)",
        API,
        PORTAL,
        WEBHOOK,
        RECORDER,
    )
    NOT_FOUND = _kind(404, "not_found", "No API endpoint at this path.", "an unknown path", API)
    INTERNAL_ERROR = _kind(
        500,
        "internal_error",
        "Something went wrong on our side. Try again; if it persists, contact support.",
        "an unexpected failure (details go to the server log, never the response)",
        API,
        PORTAL,
        WEBHOOK,
        RECORDER,
    )
    GUIDANCE_NOT_DELIVERED = _kind(
        502,
        "guidance_not_delivered",
        "The agent did not acknowledge the guidance.",
        "guidance the agent did not acknowledge within 5 s, refused, or cannot take (no "
        "guidance support), or LiveKit failed while relaying it; the guidance stays on "
        "record, `failed`, with the reason",
        API,
        PORTAL,
    )
    ALREADY_TAKEN_OVER = _kind(
        409,
        "already_taken_over",
        "Someone else has taken this call over.",
        "a takeover of a call that another person or credential holds (the message names "
        "them); one holder at a time",
        API,
        PORTAL,
    )
    TAKEOVER_NOT_FOUND = _kind(
        404,
        "takeover_not_found",
        "Nobody has taken this call over.",
        "reading, renewing or handing back the takeover of a call nobody holds",
        API,
        PORTAL,
    )
    TAKEOVER_NOT_CONFIRMED = _kind(
        502,
        "takeover_not_confirmed",
        "The agent did not confirm its pause.",
        "a takeover whose pause the agent did not confirm within 5 s, refused, or cannot "
        "take (no takeover support), or LiveKit failed while relaying it; nothing is held, "
        "and the attempt stays on record (`not_paused`)",
        API,
        PORTAL,
    )
    REMOTE_UNAVAILABLE = _kind(
        502,
        "remote_unavailable",
        "The listening service could not be reached. Try again in a moment.",
        "remote minting: the service is unreachable, slow or failing",
        PORTAL,
    )
    REMOTE_REJECTED = _kind(
        502,
        "remote_rejected",
        "The listening service refused this portal's credentials. Ask an administrator "
        "to check the REMOTE_MINT settings.",
        "remote minting: the service refused the portal's credential",
        PORTAL,
    )
    REMOTE_INVALID = _kind(
        502,
        "remote_invalid",
        "The listening service answered with an unusable token.",
        "remote minting: the answer holds no usable token",
        PORTAL,
    )
    REMOTE_MINT_INVALID = _kind(
        502,
        "remote_mint_invalid",
        "The listening service answered with a token for another room or a known listener.",
        "remote minting: the answer's token is not for the conversation's room, or its "
        "identity was already issued",
        PORTAL,
    )
    INVALID_PAYLOAD = _kind(
        400,
        "invalid_payload",
        "The body is not a LiveKit event.",
        "the body is not UTF-8 or not a LiveKit event",
        WEBHOOK,
    )
    INVALID_SIGNATURE = _kind(
        401,
        "invalid_signature",
        "The webhook signature or body hash is not valid.",
        "the signature or the body hash does not verify (a recorder's delivery: also a "
        "token not minted for a recorder delivery, or one that lives too long)",
        WEBHOOK,
        RECORDER,
    )

    @classmethod
    def all(cls) -> Iterator[ErrorKind]:
        return (value for value in vars(cls).values() if isinstance(value, ErrorKind))

    @classmethod
    def on(cls, surface: str) -> list[ErrorKind]:
        """The errors of one surface, by status, in check order within a status."""
        return sorted((e for e in cls.all() if surface in e.surfaces), key=lambda e: e.status)

    @classmethod
    def by_code(cls, code: str) -> ErrorKind | None:
        return next((e for e in cls.all() if e.code == code), None)


class ApiError(Exception):
    """Raised anywhere under ``endpoint``; answered as ``{"error": {code, message}}``."""

    def __init__(
        self, kind: ErrorKind, message: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self.kind = kind
        self.message = message or kind.message
        super().__init__(self.message)
        self.headers = dict(headers or {})
        if kind.status == 401 and API in kind.surfaces:
            self.headers.setdefault("WWW-Authenticate", 'Bearer realm="anyreach"')

    @property
    def status(self) -> int:
        return self.kind.status

    @property
    def code(self) -> str:
        return self.kind.code

    def as_response(self) -> JsonResponse:
        response = JsonResponse(
            {"error": {"code": self.code, "message": self.message}}, status=self.status
        )
        for name, value in self.headers.items():
            response[name] = value
        return response


View = Callable[..., HttpResponse]


def endpoint(*methods: str, csrf: bool = False, max_body: int = MAX_BODY) -> Callable[[View], View]:
    """Wrap a JSON endpoint: method check, body limit, ``ApiError`` → JSON, anything
    else → 500 JSON.

    ``methods`` empty: any method. Bearer-authenticated and signed endpoints are
    CSRF-exempt; session-authenticated views pass ``csrf=True`` (checked even
    where a host project lacks the CSRF middleware). ``max_body``: the largest body
    the endpoint takes, in bytes, whatever its method (also read by
    ``asgi.limit_body_size`` from the view).
    """

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            try:
                if methods and request.method not in methods:
                    raise ApiError(
                        Errors.METHOD_NOT_ALLOWED,
                        f"Use {' or '.join(methods)}.",
                        {"Allow": ", ".join(methods)},
                    )
                read_limited(request, max_body)  # the view finds it in request.body
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return exc.as_response()
            except BodyTooLarge as exc:
                return ApiError(Errors.PAYLOAD_TOO_LARGE, str(exc)).as_response()
            except Http404:
                return ApiError(Errors.NOT_FOUND).as_response()
            except Exception:
                logger.exception("Unexpected error in %s %s", request.method, request.path)
                return ApiError(Errors.INTERNAL_ERROR).as_response()

        wrapper.max_body = max_body  # type: ignore[attr-defined]
        return csrf_protect(wrapper) if csrf else csrf_exempt(wrapper)

    return decorate


@endpoint()
def api_not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    """Catch-all for unknown API paths, whatever the method, in the same format."""
    raise ApiError(Errors.NOT_FOUND)


def markdown_table(surface: str = API) -> str:
    """The error table for ``surface``, as docs/api/errors.md holds it (a test compares)."""
    lines = ["| Status | Code | When |", "|---|---|---|"]
    lines += [f"| {e.status} | `{e.code}` | {e.when} |" for e in Errors.on(surface)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
