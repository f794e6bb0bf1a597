"""The OpenAPI 3.1 document of the API, served at ``/core/openapi.json``."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse

from .api import ORG_HEADER

_ERROR_CODES: dict[int, list[str]] = {
    400: ["missing_organization", "invalid_organization"],
    401: [
        "missing_credentials",
        "invalid_credentials",
        "credentials_revoked",
        "credentials_expired",
    ],
    403: ["organization_mismatch", "not_a_member", "insufficient_scope"],
    404: ["conversation_not_found", "room_not_found"],
    405: ["method_not_allowed"],
    409: ["conversation_not_active"],
    429: ["rate_limited"],
}

_DESCRIPTIONS = {
    400: "A personal access token was sent without a valid X-Anyreach-Org header.",
    401: "Missing, malformed, unknown, revoked or expired credential.",
    403: "Wrong organization, not a member, or missing scope.",
    404: "Unknown conversation (`conversation_not_found`, also for other organizations' "
    "conversations and ids that are not UUIDs) or an active conversation without a "
    "LiveKit room (`room_not_found`).",
    405: "Only POST is allowed.",
    409: "The conversation is not active (triggered, ringing or in progress).",
    429: "Per-credential rate limit reached; see Retry-After.",
}


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _DESCRIPTIONS[status],
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/Error"},
                "example": {
                    "error": {"code": _ERROR_CODES[status][0], "message": "A human message."}
                },
            }
        },
    }
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer challenge."}
        }
    if status == 429:
        response["headers"] = {
            "Retry-After": {
                "schema": {"type": "integer", "minimum": 1},
                "description": "Seconds until the limit resets.",
            }
        }
    if status == 405:
        response["headers"] = {"Allow": {"schema": {"type": "string"}}}
    return response


def build_document() -> dict[str, Any]:
    all_codes = sorted({code for codes in _ERROR_CODES.values() for code in codes} | {"not_found"})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Anyreach live-listen API",
            "version": "1.0.0",
            "description": "Mint subscribe-only, hidden listener tokens for live conversations. "
            "Call it from your backend: the credential must never reach a browser.",
        },
        "paths": {
            "/core/conversations/{conversation_id}/listener-token": {
                "post": {
                    "operationId": "createListenerToken",
                    "summary": "Mint a listener token for a live conversation",
                    "description": "Requires the `conversations:read_sensitive` or "
                    "`conversations:manage` scope. Personal access tokens also need the "
                    f"`{ORG_HEADER}` header.",
                    "security": [{"apiKey": []}, {"personalAccessToken": []}],
                    "parameters": [
                        {
                            "name": "conversation_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "format": "uuid"},
                        },
                        {
                            "name": ORG_HEADER,
                            "in": "header",
                            "required": False,
                            "description": "Organization id. Required with a `pat_` token; "
                            "with an `ak_` key it must name the key's organization.",
                            "schema": {"type": "string", "format": "uuid"},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "Everything the SDK needs.",
                            "headers": {"Cache-Control": {"schema": {"type": "string"}}},
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/ListenerToken"}
                                }
                            },
                        },
                        **{str(status): _error_response(status) for status in _ERROR_CODES},
                    },
                }
            }
        },
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
            "schemas": {
                "ListenerToken": {
                    "type": "object",
                    "required": ["url", "token", "room_name", "expires_at"],
                    "additionalProperties": False,
                    "properties": {
                        "url": {"type": "string", "description": "LiveKit server URL."},
                        "token": {"type": "string", "description": "Subscribe-only listener JWT."},
                        "room_name": {"type": "string"},
                        "expires_at": {
                            "type": "string",
                            "format": "date-time",
                            "description": "ISO 8601, UTC; equals the JWT's exp.",
                        },
                    },
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
                                "code": {"type": "string", "enum": all_codes},
                                "message": {"type": "string"},
                            },
                        }
                    },
                },
            },
        },
    }


def openapi_document(request: HttpRequest) -> JsonResponse:
    return JsonResponse(build_document(), json_dumps_params={"indent": 2})
