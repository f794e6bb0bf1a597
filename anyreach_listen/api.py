"""``POST /core/conversations/{id}/listener-token``: the contract's minting endpoint.

Checks run in this order, each with its own status and stable error code:
credential (401) → organization header (400/403) → rate limit (429) →
scope (403) → conversation visible (404) → active (409) → has a room (404).
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from . import access, ratelimit
from .errors import ApiError, Errors, endpoint
from .minting import grant_listen
from .models import ListenVia


@endpoint("POST")
def listener_token(request: HttpRequest, conversation_id: str) -> JsonResponse:
    caller = access.for_api_request(request)
    ratelimit.enforce(caller.rate_limit_bucket, "requests for this credential")
    if not caller.can_listen:
        raise ApiError(Errors.INSUFFICIENT_SCOPE)
    conversation = caller.find(conversation_id)
    if conversation is None:
        raise ApiError(Errors.CONVERSATION_NOT_FOUND)
    grant = grant_listen(
        conversation, via=ListenVia.API, audit=caller.audit_fields, request=request
    )
    response = JsonResponse(grant.as_response())
    response["Cache-Control"] = "no-store"
    return response
