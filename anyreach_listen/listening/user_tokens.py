"""Per-user listener tokens for signed-in people (portal pages, admin, host projects).

POST with session auth and CSRF: rate limit per user → conversation visible →
role may listen → the one grant path. Answers in the API's JSON error format
so the listen panel can show the message.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import cache_control

from anyreach_listen.access import policy as access
from anyreach_listen.access import ratelimit
from anyreach_listen.api.errors import ApiError, Errors, endpoint
from anyreach_listen.listening.minting import grant_listen
from anyreach_listen.models import ListenVia


@endpoint("POST", csrf=True)
@cache_control(no_store=True)
def listen_token(request: HttpRequest, conversation_id: str) -> JsonResponse:
    if not request.user.is_authenticated:
        raise ApiError(Errors.NOT_AUTHENTICATED)
    # The admin's listen page audits as "admin"; only staff can claim it.
    admin = request.GET.get("via") == "admin" and request.user.is_staff
    # The same budget as an API credential, counted per signed-in user.
    ratelimit.enforce(f"user:{request.user.pk}", "listen requests")
    policy = access.for_request(request)
    conversation = policy.find(conversation_id)
    if conversation is None:
        raise ApiError(Errors.CONVERSATION_NOT_FOUND)
    refusal = policy.listen_refusal(conversation)
    if refusal is not None:
        raise ApiError(Errors.LISTEN_NOT_ALLOWED, refusal)
    grant = grant_listen(
        conversation,
        via=ListenVia.ADMIN if admin else ListenVia.PORTAL,
        audit=policy.audit_fields,
        request=request,
    )
    return JsonResponse(grant.as_response())
