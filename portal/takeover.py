"""The portal's "Take over": start or renew, hand back, who holds a call, the audit lists.

People who may take a live call over (``Capability.TAKE_OVER``) get the section
``_takeover.html``; its script (js/src/portal/takeover.ts, built into
static/portal/takeover.js) posts to ``take_over`` and ``hand_back``, which call
``anyreach_listen.assist.takeover`` and answer JSON (errors in the API's shape). The pages
that offer it may connect to the LiveKit server and use the microphone (``allow_takeover``):
the page publishes with a connection of its own, the listen frame stays listen-only.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import cache_control

from anyreach_listen import events
from anyreach_listen.access import policy as access
from anyreach_listen.access import ratelimit
from anyreach_listen.access.policy import UserAccess
from anyreach_listen.access.roles import Capability
from anyreach_listen.api.errors import ApiError, Errors, endpoint
from anyreach_listen.assist import takeover
from anyreach_listen.conf import listen_settings
from anyreach_listen.models import Conversation, Takeover
from anyreach_listen.public import livekit_origins

HISTORY_LIMIT = 200
NOT_ALLOWED = "Your role cannot take this call over."


def may_take_over(policy: UserAccess, conversation: Conversation) -> bool:
    """The section shows only on a live call: an ended one has nobody to speak with."""
    return conversation.is_active and policy.can_on(Capability.TAKE_OVER, conversation)


def takes_over_anywhere(policy: UserAccess) -> bool:
    """Whether the user may take some call over (the dashboard's dialog may offer it)."""
    return bool(policy.organizations_with(Capability.TAKE_OVER))


# ---- the pages that offer it: CSP and Permissions-Policy ----


def allow_takeover(response: HttpResponse) -> HttpResponse:
    """Let ``response``'s page connect to the LiveKit server (its ws(s) origin, and the
    http(s) one livekit-client asks when a connection fails) and use the microphone
    (settings.TAKEOVER_PERMISSIONS_POLICY); nothing else of SECURE_CSP changes."""
    policy: dict[str, Any] = dict(settings.SECURE_CSP)
    connect = list(policy.get("connect-src", []))
    connect += [o for o in livekit_origins(str(listen_settings.LIVEKIT_URL)) if o not in connect]
    policy["connect-src"] = connect
    response._csp_config = policy  # type: ignore[attr-defined]  # read by Django's CSP middleware
    response["Permissions-Policy"] = settings.TAKEOVER_PERMISSIONS_POLICY
    return response


# ---- the views ----


def _conversation(
    request: HttpRequest, conversation_id: uuid.UUID
) -> tuple[UserAccess, Conversation]:
    """The call, for a signed-in person who may take it over; the API's errors else."""
    if not request.user.is_authenticated:
        raise ApiError(Errors.NOT_AUTHENTICATED, "Sign in to take calls over.")
    policy = access.for_request(request)
    conversation = policy.find(conversation_id)
    if conversation is None:
        raise ApiError(Errors.CONVERSATION_NOT_FOUND)
    if not policy.can_on(Capability.TAKE_OVER, conversation):
        raise ApiError(Errors.INSUFFICIENT_SCOPE, NOT_ALLOWED)
    # The API's budget per credential, counted per signed-in user (as the portal's listen
    # tokens and guidance are): 429 with Retry-After when used up.
    ratelimit.enforce(f"user:{request.user.pk}", "takeover requests")
    return policy, conversation


# takeover.take_over commits its audit row before the pause goes out, and hand_back ends
# the row before the agent resumes: no request transaction around either.
@transaction.non_atomic_requests
@endpoint("POST", csrf=True)
@cache_control(no_store=True)
def take_over(request: HttpRequest, conversation_id: uuid.UUID) -> JsonResponse:
    """Take the call over (201), or renew the caller's own takeover (200; form field
    ``id``: that one only, 404 ``takeover_not_found`` once it ended, never a new one):
    the grant the page connects with (``id``, ``url``, ``token``, ``room_name``,
    ``expires_at``)."""
    policy, conversation = _conversation(request, conversation_id)
    renewing = request.POST.get("id")
    grant = takeover.take_over(
        conversation,
        audit=policy.audit_fields,
        request=request,
        renewing=_takeover_id(renewing) if renewing is not None else None,
    )
    return JsonResponse(grant.as_response(), status=200 if grant.renewed else 201)


@transaction.non_atomic_requests
@endpoint("POST", csrf=True)
@cache_control(no_store=True)
def hand_back(request: HttpRequest, conversation_id: uuid.UUID) -> JsonResponse:
    """Hand the caller's own takeover (form field ``id``) back to the agent: the ended
    takeover (``takeover.updated``'s shape). Someone else's, or one that ended already:
    404 ``takeover_not_found`` (the API's DELETE ends whoever's is held)."""
    _, conversation = _conversation(request, conversation_id)
    held = takeover.held(conversation)
    wanted = _takeover_id(request.POST.get("id", ""))
    if held is None or held.pk != wanted or held.user_id != request.user.pk:
        raise ApiError(Errors.TAKEOVER_NOT_FOUND, "You hold no takeover of this call.")
    # The id again under the lock: a takeover someone else started meanwhile stays.
    ended = takeover.hand_back(conversation, takeover_id=wanted)
    return JsonResponse(events.live_takeover(ended).as_json())


def _takeover_id(value: str) -> uuid.UUID:
    wanted = access.parse_uuid(value)
    if wanted is None:
        raise ApiError(Errors.TAKEOVER_NOT_FOUND, "You hold no takeover of this call.")
    return wanted


# ---- who holds a call; the audit ----


def for_page(policy: UserAccess, conversation: Conversation) -> list[Takeover]:
    """The call's takeovers for its page's audit list, for people who may see who is in
    the call (``SEE_LISTENERS``, as presence); empty for everyone else."""
    if not policy.can_on(Capability.SEE_LISTENERS, conversation):
        return []
    return takeover.for_call(conversation)


def for_history(request: HttpRequest, admin_orgs: frozenset[uuid.UUID]) -> QuerySet[Takeover]:
    """The history page's takeovers: the user's own, and everyone's in the organizations
    they administer (like its listen sessions), newest first."""
    rows = Takeover.objects.filter(
        Q(user=request.user) | Q(conversation__organization_id__in=admin_orgs)
    )
    ordered = rows.select_related("conversation", "user", "api_key").order_by("-started_at")
    return ordered[:HISTORY_LIMIT]
