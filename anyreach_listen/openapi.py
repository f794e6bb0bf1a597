"""The OpenAPI 3.1 document of the API, served at ``/core/openapi.json``."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse

from .access import ORG_HEADER
from .errors import API, ErrorKind, Errors, endpoint


def _listener_token_errors() -> dict[int, list[ErrorKind]]:
    """The listener-token endpoint's errors by status (500 is implied everywhere)."""
    by_status: dict[int, list[ErrorKind]] = {}
    for error in Errors.on(API):
        if error.code not in _NOT_THIS_OPERATION:
            by_status.setdefault(error.status, []).append(error)
    return by_status


# Answered under /core/ by the catch-all and the endpoint wrapper, not by this operation.
_NOT_THIS_OPERATION = {Errors.NOT_FOUND.code, Errors.INTERNAL_ERROR.code}
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


def _error_response(errors: list[ErrorKind]) -> dict[str, Any]:
    description = "; ".join(f"`{e.code}`: {e.when}" for e in errors) + "."
    response: dict[str, Any] = {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/Error"},
                "example": {"error": {"code": errors[0].code, "message": errors[0].message}},
            }
        },
    }
    if errors[0].status in _HEADERS:
        response["headers"] = _HEADERS[errors[0].status]
    return response


def build_document() -> dict[str, Any]:
    all_codes = sorted(e.code for e in Errors.on(API))
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
                        **{
                            str(status): _error_response(errors)
                            for status, errors in _listener_token_errors().items()
                        },
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


@endpoint("GET", "HEAD")
def openapi_document(request: HttpRequest) -> JsonResponse:
    return JsonResponse(build_document(), json_dumps_params={"indent": 2})
