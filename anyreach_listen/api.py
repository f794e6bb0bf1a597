"""``POST /core/conversations/{id}/listener-token``: the contract's minting endpoint.

Checks run in this order, each with its own status and stable error code:
credential (401) → organization header (400/403) → rate limit (429) →
scope (403) → conversation visible (404) → active (409) → has a room (404).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from . import credentials, ratelimit
from .errors import ApiError, error_response
from .minting import ensure_listenable, mint_listener_token
from .models import (
    ApiKey,
    Conversation,
    ListenVia,
    Membership,
    Organization,
    PersonalAccessToken,
)
from .roles import can_listen

ORG_HEADER = "X-Anyreach-Org"
_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="anyreach"'}


@dataclass(frozen=True)
class Caller:
    """Who is calling, in which organization, with which effective scopes."""

    credential: ApiKey | PersonalAccessToken
    organization: Organization
    scopes: frozenset[str]
    membership: Membership | None  # set for PATs


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, _BEARER_CHALLENGE)


def _bearer_token(request: HttpRequest) -> str:
    header = request.headers.get("Authorization")
    if not header:
        raise _unauthorized("missing_credentials", "Send Authorization: Bearer <ak_… or pat_…>.")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise _unauthorized(
            "invalid_credentials", "The Authorization header must be 'Bearer <token>'."
        )
    return value.strip()


def _parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def authenticate_caller(request: HttpRequest) -> Caller:
    try:
        credential = credentials.authenticate(_bearer_token(request))
    except credentials.CredentialError as exc:
        raise _unauthorized(exc.code, exc.message) from None

    org_header = request.headers.get(ORG_HEADER)
    org_id = _parse_uuid(org_header) if org_header else None
    if org_header and org_id is None:
        raise ApiError(400, "invalid_organization", f"{ORG_HEADER} must be an organization id.")

    if isinstance(credential, ApiKey):
        if org_id is not None and org_id != credential.organization_id:
            raise ApiError(
                403, "organization_mismatch", "This API key belongs to another organization."
            )
        return Caller(credential, credential.organization, frozenset(credential.scopes), None)

    if org_id is None:
        raise ApiError(
            400, "missing_organization", f"Personal access tokens need the {ORG_HEADER} header."
        )
    membership = (
        Membership.objects.select_related("organization")
        .filter(user_id=credential.user_id, organization_id=org_id)
        .first()
    )
    if membership is None:
        raise ApiError(403, "not_a_member", "You are not a member of this organization.")
    # A PAT never grants more than its owner's role does in that organization.
    scopes = frozenset(credential.scopes) & membership.scopes
    return Caller(credential, membership.organization, scopes, membership)


def _find_conversation(caller: Caller, conversation_id: str) -> Conversation:
    not_found = ApiError(404, "conversation_not_found", "No such conversation.")
    parsed = _parse_uuid(conversation_id)
    if parsed is None:
        raise not_found
    conversations = (
        caller.membership.visible_conversations()
        if caller.membership is not None
        else Conversation.objects.filter(organization=caller.organization)
    )
    conversation = conversations.select_related("organization").filter(pk=parsed).first()
    if conversation is None:
        raise not_found
    return conversation


def client_ip(request: HttpRequest) -> str | None:
    # REMOTE_ADDR only: trusting X-Forwarded-For needs a proxy the operator configures.
    return request.META.get("REMOTE_ADDR") or None


@csrf_exempt
def listener_token(request: HttpRequest, conversation_id: str) -> JsonResponse:
    if request.method != "POST":
        return error_response(
            405, "method_not_allowed", "Use POST to mint a listener token.", {"Allow": "POST"}
        )
    try:
        caller = authenticate_caller(request)
        ratelimit.enforce(
            f"{caller.credential.PREFIX}:{caller.credential.pk}", "requests for this credential"
        )
        if not can_listen(caller.scopes):
            raise ApiError(
                403,
                "insufficient_scope",
                "Needs the conversations:read_sensitive or conversations:manage scope.",
            )
        conversation = _find_conversation(caller, conversation_id)
        ensure_listenable(conversation)
    except ApiError as exc:
        return exc.as_response()

    api_key = caller.credential if isinstance(caller.credential, ApiKey) else None
    pat = caller.credential if isinstance(caller.credential, PersonalAccessToken) else None
    grant = mint_listener_token(
        conversation,
        via=ListenVia.API,
        user=pat.user if pat else None,
        api_key=api_key,
        personal_access_token=pat,
        client_ip=client_ip(request),
        user_agent=request.headers.get("User-Agent", ""),
    )
    response = JsonResponse(grant.as_response())
    response["Cache-Control"] = "no-store"
    return response
