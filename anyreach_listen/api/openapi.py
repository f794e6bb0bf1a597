"""The OpenAPI 3.1 document of the API, served at ``/core/openapi.json``.

Each operation names its errors from the registry (``errors.Errors``), so each error
response lists exactly the codes that operation answers with that status
(``tests/api/test_openapi_fuzz.py`` holds the API to it). Schemas are generated:
answers from ``shapes.py``, request bodies from the views' field tables and
``recorder.wire``. Details: docs/internals/api-and-access.md.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse

from anyreach_listen.access.policy import ORG_HEADER
from anyreach_listen.api import shapes
from anyreach_listen.api.errors import API, ErrorKind, Errors, endpoint
from anyreach_listen.api.payloads import Field
from anyreach_listen.api.views import (
    CREATE_FIELDS,
    GUIDANCE_FIELDS,
    MAX_READ_PAGE_SIZE,
    READ_PAGE_SIZE,
    RULE_FIELDS,
    TAKEOVER_FIELDS,
    UPDATE_FIELDS,
)
from anyreach_listen.models import AlertRole, AlertSeverity, ConversationStatus
from anyreach_listen.recorder.wire import TranscriptPush

E = Errors
# Every operation authenticates the same way (after the per-address limit on
# failed credentials, hence 429 everywhere).
_AUTH = [
    E.RATE_LIMITED,
    E.MISSING_CREDENTIALS,
    E.INVALID_CREDENTIALS,
    E.CREDENTIALS_REVOKED,
    E.CREDENTIALS_EXPIRED,
    E.MISSING_ORGANIZATION,
    E.INVALID_ORGANIZATION,
    E.ORGANIZATION_MISMATCH,
    E.NOT_A_MEMBER,
]
_BODY = [
    E.UNSUPPORTED_MEDIA_TYPE,
    E.INVALID_JSON,
    E.UNKNOWN_FIELD,
    E.INVALID_FIELD,
    E.PAYLOAD_TOO_LARGE,
]

_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer challenge."}},
    405: {"Allow": {"schema": {"type": "string"}}},
    429: {
        "Retry-After": {
            "schema": {"type": "integer", "minimum": 1},
            "description": "Seconds until the limit resets.",
        }
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error_responses(errors: list[ErrorKind]) -> dict[str, Any]:
    by_status: dict[int, list[ErrorKind]] = {}
    for error in errors:
        by_status.setdefault(error.status, []).append(error)
    responses: dict[str, Any] = {}
    for status, kinds in sorted(by_status.items()):
        response: dict[str, Any] = {
            "description": "; ".join(f"`{e.code}`: {e.when}" for e in kinds) + ".",
            "content": {
                "application/json": {
                    "schema": {
                        "allOf": [_ref("Error")],
                        "properties": {
                            "error": {
                                "properties": {"code": {"enum": [e.code for e in kinds]}},
                            }
                        },
                    },
                    "example": {"error": {"code": kinds[0].code, "message": kinds[0].message}},
                }
            },
        }
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
        responses[str(status)] = response
    return responses


def _operation(
    operation_id: str,
    summary: str,
    description: str,
    ok: dict[str, Any],
    errors: list[ErrorKind],
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: str | None = None,
    body_required: bool = True,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "security": [{"apiKey": []}, {"personalAccessToken": []}],
        "parameters": [*(parameters or []), _ORG_PARAMETER],
        "responses": {
            **ok,
            **_error_responses([*errors, E.METHOD_NOT_ALLOWED, E.INTERNAL_ERROR]),
        },
    }
    if body:
        operation["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return operation


def _json(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"Cache-Control": {"schema": {"type": "string"}}},
        "content": {"application/json": {"schema": _ref(schema)}},
    }


_ORG_PARAMETER = {
    "name": ORG_HEADER,
    "in": "header",
    "required": False,
    "description": "Organization id. Required with a `pat_` token; with an `ak_` key it must "
    "name the key's organization. An empty value counts as absent.",
    "schema": {"anyOf": [{"type": "string", "format": "uuid"}, {"type": "string", "maxLength": 0}]},
}
_ID_PARAMETER = {
    "name": "conversation_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
_READ = "Needs any conversation scope (`conversations:read`, `conversations:read_sensitive` or "
_READ += "`conversations:manage`); a PAT sees what its owner's teams see."
_MANAGE = "Needs `conversations:manage`; rate-limited per credential like minting."
_SENSITIVE = "Needs `conversations:read_sensitive` or `conversations:manage` (a PAT: after "
_SENSITIVE += "intersecting with its owner's role, so never a viewer's); a PAT sees what its "
_SENSITIVE += "owner's teams see."
_RULE_ID_PARAMETER = {
    "name": "rule_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
# Transcripts, alerts and rules: pages of up to 500, rate-limited per credential on their own.
_READ_PAGE_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "cursor",
        "in": "query",
        "description": "From a previous page's `next`.",
        "schema": {"type": "string"},
    },
    {
        "name": "limit",
        "in": "query",
        "description": f"Page size (default {READ_PAGE_SIZE}).",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_READ_PAGE_SIZE},
    },
]
_METERED = (
    " Cursor-paginated: follow `next`. Reads are rate-limited per credential apart from "
    "minting and writes (`READ_RATE_LIMIT_REQUESTS` per `READ_RATE_LIMIT_WINDOW` seconds)."
)
_AUDITED = (
    " Audited as a transcript read: one `TranscriptRead` row (via `api`) per credential, "
    "client address and conversation per hour, whichever page or list is read."
)
# What the field tables cannot say: descriptions and the defaults the views apply.
_CONVERSATION_DOCS: dict[str, dict[str, Any]] = {
    "room_name": {"description": "Unique among active conversations."},
    "team_id": {"format": "uuid"},
    "external_id": {
        "description": "Your id for the call: registering it again answers 200 with the "
        "existing conversation, unchanged."
    },
}
_CREATE_DOCS = {**_CONVERSATION_DOCS, "status": {"default": ConversationStatus.IN_PROGRESS}}
_UPDATE_DOCS = {
    **_CONVERSATION_DOCS,
    "status": {
        "description": "Forward only: triggered → ringing → in_progress → completed | failed | "
        "canceled; triggered and ringing may end directly."
    },
    "room_name": {"description": "Only while none is set."},
}
_RULE_DOCS: dict[str, dict[str, Any]] = {
    "phrase": {
        "description": "Matched on word boundaries, ignoring case and punctuation; needs at "
        "least one word.",
    },
    "role": {"default": AlertRole.ANY},
    "severity": {"default": AlertSeverity.WARNING},
    "team_id": {
        "format": "uuid",
        "description": "Only this team's calls; none: every call of the organization.",
    },
}


_GUIDANCE_DOCS: dict[str, dict[str, Any]] = {
    "mode": {
        "description": "`say`: the agent says the text now, interrupting itself; `whisper`: "
        "private instructions for its next replies (the caller hears nothing of them)."
    },
}


def _body(
    fields: dict[str, Field], docs: dict[str, dict[str, Any]], required: list[str] | None = None
) -> dict[str, Any]:
    """A request body's schema from the table its view cleans it with."""
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {name: {**f.schema, **docs.get(name, {})} for name, f in fields.items()},
    }
    if required:
        schema["required"] = required
    return schema


def _schemas() -> dict[str, Any]:
    return {
        **shapes.component_schemas(requests=[TranscriptPush]),
        "ConversationCreate": _body(CREATE_FIELDS, _CREATE_DOCS),
        "ConversationUpdate": _body(UPDATE_FIELDS, _UPDATE_DOCS),
        "AlertRuleCreate": _body(RULE_FIELDS, _RULE_DOCS, required=["phrase"]),
        "GuidanceCreate": _body(GUIDANCE_FIELDS, _GUIDANCE_DOCS, required=["mode", "text"]),
        "TakeoverCreate": {
            **_body(TAKEOVER_FIELDS, {}),
            "description": "No fields: send no body or an empty object.",
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "additionalProperties": False,
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "enum": sorted(e.code for e in E.on(API))},
                        "message": {"type": "string"},
                    },
                }
            },
        },
    }


def _transcript_paths() -> dict[str, Any]:
    found = [*_AUTH, E.INSUFFICIENT_SCOPE, E.CONVERSATION_NOT_FOUND]
    # A query parameter other than limit and cursor; a limit out of range, a cursor not
    # given out.
    paged = [E.UNKNOWN_FIELD, E.INVALID_FIELD]
    page = [*found, *paged]
    return {
        "/core/conversations/{conversation_id}/transcript": {
            "post": _operation(
                "pushTranscript",
                "Add transcript segments",
                _MANAGE + " Idempotent by segment (role and id): interim updates carry the "
                "whole text so far, a final one settles the segment and is never changed "
                "again. Accepted until `TRANSCRIPT_LATE_SECONDS` after the call ended.",
                {"200": _json("What the push changed.", "TranscriptPushResult")},
                [*found, *_BODY, E.TRANSCRIPT_CLOSED],
                parameters=[_ID_PARAMETER],
                body="TranscriptPush",
            ),
            "get": _operation(
                "getTranscript",
                "The conversation's transcript, in spoken order",
                _SENSITIVE + _METERED + _AUDITED + " Segments recorded while you page land "
                "on later pages; none is answered twice.",
                {"200": _json("A page of the transcript.", "Transcript")},
                page,
                parameters=[_ID_PARAMETER, *_READ_PAGE_PARAMETERS],
            ),
        },
        "/core/conversations/{conversation_id}/alerts": {
            "get": _operation(
                "listAlerts",
                "The alerts raised in a conversation",
                _SENSITIVE + _METERED + _AUDITED,
                {"200": _json("A page of its alerts, oldest first.", "AlertList")},
                page,
                parameters=[_ID_PARAMETER, *_READ_PAGE_PARAMETERS],
            )
        },
        **_assist_paths(found),
        "/core/alert-rules": {
            "post": _operation(
                "createAlertRule",
                "Create an alert rule",
                _MANAGE + " An organization has at most `MAX_ALERT_RULES` (default 200) active "
                "rules: delete one to make room.",
                {"201": _json("Created.", "AlertRule")},
                [*_AUTH, E.INSUFFICIENT_SCOPE, *_BODY, E.INVALID_TEAM, E.TOO_MANY_RULES],
                body="AlertRuleCreate",
            ),
            "get": _operation(
                "listAlertRules",
                "The organization's alert rules",
                "Needs `conversations:manage`." + _METERED,
                {"200": _json("A page of its active rules, oldest first.", "AlertRuleList")},
                [*_AUTH, E.INSUFFICIENT_SCOPE, *paged],
                parameters=_READ_PAGE_PARAMETERS,
            ),
        },
        "/core/alert-rules/{rule_id}": {
            "delete": _operation(
                "deleteAlertRule",
                "Delete an alert rule",
                _MANAGE + " The rule stops matching; alerts it raised stay.",
                {"200": _json("The deleted rule.", "AlertRule")},
                [*_AUTH, E.INSUFFICIENT_SCOPE, E.ALERT_RULE_NOT_FOUND],
                parameters=[_RULE_ID_PARAMETER],
            )
        },
    }


_TAKE_OVER = (
    "Needs `conversations:take_over` (of the portal roles, admins and supervisors of the "
    "call's team); "
)


def _takeover_path(found: list[ErrorKind]) -> dict[str, Any]:
    """Taking a call over from its AI agent, and handing it back (docs/api/takeover.md)."""
    # The POST's body takes no fields, so no value can be invalid_field.
    empty_body = [E.UNSUPPORTED_MEDIA_TYPE, E.INVALID_JSON, E.UNKNOWN_FIELD, E.PAYLOAD_TOO_LARGE]
    held = [*found, E.TAKEOVER_NOT_FOUND]
    return {
        "post": _operation(
            "takeOver",
            "Take the conversation over from its AI agent, or renew your takeover",
            _TAKE_OVER + "rate-limited per credential like minting. Recorded (who, when) "
            "before the agent is told to pause; answered once it confirmed (within 5 s), "
            "else 502 and nothing is held. The token joins the call's room as a visible "
            "participant that may publish its microphone only, for `TAKEOVER_TOKEN_TTL` "
            "seconds (at most 600). The holder's POST while holding it renews it: 200, "
            "the same id, a fresh token. One holder at a time.",
            {
                "201": _json("Taken over: the agent confirmed its pause.", "TakeoverToken"),
                "200": _json("Renewed: the same takeover, a fresh token.", "TakeoverToken"),
            },
            [
                *found,
                *empty_body,
                E.CONVERSATION_NOT_ACTIVE,
                E.AGENT_NOT_PRESENT,
                E.ALREADY_TAKEN_OVER,
                E.TAKEOVER_NOT_CONFIRMED,
                # Handed back (or ended otherwise) before the agent confirmed its pause.
                E.TAKEOVER_NOT_FOUND,
            ],
            parameters=[_ID_PARAMETER],
            body="TakeoverCreate",
            body_required=False,
        ),
        "get": _operation(
            "getTakeover",
            "Who has taken the conversation over",
            _TAKE_OVER + "rate-limited as reads. The takeover held now, or 404.",
            {"200": _json("The takeover held now.", "Takeover")},
            held,
            parameters=[_ID_PARAMETER],
        ),
        "delete": _operation(
            "handBack",
            "Hand the conversation back to its AI agent",
            _TAKE_OVER + "rate-limited per credential like minting. Ends the takeover held "
            "now, whoever holds it: the supervisor's participant leaves the room and the "
            "agent resumes with what was said meanwhile.",
            {"200": _json("The takeover, ended (`handed_back`).", "Takeover")},
            held,
            parameters=[_ID_PARAMETER],
        ),
    }


def _assist_paths(found: list[ErrorKind]) -> dict[str, Any]:
    """Who listens now, guidance to the call's AI agent (docs/api/guidance.md), and taking
    the call over from it (docs/api/takeover.md)."""
    return {
        "/core/conversations/{conversation_id}/takeover": _takeover_path(found),
        "/core/conversations/{conversation_id}/listeners": {
            "get": _operation(
                "listListeners",
                "Who is listening to a conversation now",
                _SENSITIVE + " The listen sessions in the call's room now (joined, not left, "
                "not revoked), first to join first. Rate-limited as reads.",
                {"200": _json("Its listeners now.", "ListenerList")},
                found,
                parameters=[_ID_PARAMETER],
            )
        },
        "/core/conversations/{conversation_id}/guidance": {
            "post": _operation(
                "giveGuidance",
                "Guide the conversation's AI agent",
                "Needs `conversations:guide`; rate-limited per credential like minting. "
                "Recorded (who, when, what) before it is sent; the agent gets it signed "
                "and acknowledges within 5 s, or the guidance stays on record as `failed`, "
                "with the reason, and the answer is 502.",
                {"201": _json("Delivered: the agent acknowledged it.", "Guidance")},
                [
                    *found,
                    *_BODY,
                    E.CONVERSATION_NOT_ACTIVE,
                    E.AGENT_NOT_PRESENT,
                    E.GUIDANCE_NOT_DELIVERED,
                ],
                parameters=[_ID_PARAMETER],
                body="GuidanceCreate",
            ),
            "get": _operation(
                "listGuidance",
                "The guidance given in a conversation, oldest first",
                _SENSITIVE + " Rate-limited as reads." + _AUDITED,
                {"200": _json("Its guidance, every status.", "GuidanceList")},
                found,
                parameters=[_ID_PARAMETER],
            ),
        },
    }


def _paths() -> dict[str, Any]:
    list_parameters = [
        {
            "name": "status",
            "in": "query",
            "schema": {"type": "string", "enum": ["active", *ConversationStatus.values]},
        },
        {"name": "team_id", "in": "query", "schema": {"type": "string", "format": "uuid"}},
        {"name": "external_id", "in": "query", "schema": {"type": "string"}},
        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 200},
        },
    ]
    conversation = _json("The conversation.", "Conversation")
    return {
        "/core/conversations": {
            "post": _operation(
                "createConversation",
                "Register a conversation",
                _MANAGE,
                {"201": _json("Registered.", "Conversation"), "200": conversation},
                [
                    *_AUTH,
                    E.INSUFFICIENT_SCOPE,
                    *_BODY,
                    E.INVALID_TEAM,
                    E.ROOM_NOT_OWNED,
                    E.ROOM_IN_USE,
                ],
                body="ConversationCreate",
            ),
            "get": _operation(
                "listConversations",
                "List conversations, newest first",
                _READ + " Cursor-paginated: follow `next`.",
                {"200": _json("A page of conversations.", "ConversationPage")},
                [*_AUTH, E.INSUFFICIENT_SCOPE, E.INVALID_FIELD, E.INVALID_TEAM],
                parameters=list_parameters,
            ),
        },
        "/core/conversations/{conversation_id}": {
            "get": _operation(
                "getConversation",
                "One conversation",
                _READ,
                {"200": conversation},
                [*_AUTH, E.INSUFFICIENT_SCOPE, E.CONVERSATION_NOT_FOUND],
                parameters=[_ID_PARAMETER],
            ),
            "patch": _operation(
                "updateConversation",
                "Change a conversation's state or labels",
                _MANAGE + " Entering a terminal status sets `ended_at` and revokes every "
                "listener of the call.",
                {"200": conversation},
                [
                    *_AUTH,
                    E.INSUFFICIENT_SCOPE,
                    E.CONVERSATION_NOT_FOUND,
                    *_BODY,
                    E.INVALID_TEAM,
                    E.ROOM_NOT_OWNED,
                    E.ROOM_IN_USE,
                    E.INVALID_TRANSITION,
                ],
                parameters=[_ID_PARAMETER],
                body="ConversationUpdate",
            ),
        },
        "/core/conversations/{conversation_id}/listener-token": {
            "post": _operation(
                "createListenerToken",
                "Mint a listener token for a live conversation",
                "Requires the `conversations:read_sensitive` or `conversations:manage` scope. "
                f"Personal access tokens also need the `{ORG_HEADER}` header.",
                {"200": _json("Everything the SDK needs.", "ListenerToken")},
                [
                    *_AUTH,
                    E.INSUFFICIENT_SCOPE,
                    E.CONVERSATION_NOT_FOUND,
                    E.ROOM_NOT_FOUND,
                    E.CONVERSATION_NOT_ACTIVE,
                ],
                parameters=[_ID_PARAMETER],
            )
        },
        **_transcript_paths(),
    }


def build_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Anyreach live-listen API",
            "version": "1.4.0",
            "description": "Register and follow conversations, mint subscribe-only, hidden "
            "listener tokens for live ones, see who listens, guide their AI agents or take "
            "calls over from them, record and read their transcripts, and manage alert "
            "rules. Call it from your backend: the credential must never reach a browser.",
        },
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Organization API key `ak_…`.",
                },
                "personalAccessToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": f"User token `pat_…`; send `{ORG_HEADER}` too.",
                },
            },
            "schemas": _schemas(),
        },
    }


@endpoint("GET", "HEAD")
def openapi_document(request: HttpRequest) -> JsonResponse:
    return JsonResponse(build_document(), json_dumps_params={"indent": 2})
