"""Per-user listener tokens for logged-in people (portal pages, admin, host projects).

POST with session auth and CSRF. Checks the user's object permission, then
mints through the one minting function (or the remote API when configured).
Answers in the API's JSON error format so the listen panel can show the message.
"""

from __future__ import annotations

import datetime as dt
import uuid

import jwt
from django.http import HttpRequest, JsonResponse

from . import access
from .api import client_ip
from .conf import listen_settings
from .errors import ApiError, error_response
from .minting import ensure_listenable, mint_listener_token
from .models import Conversation, ListenSession, ListenVia
from .remote_minting import mint_remotely


def _conversation_for(request: HttpRequest, conversation_id: str) -> Conversation:
    try:
        parsed = uuid.UUID(conversation_id)
    except ValueError:
        parsed = None
    conversation = (
        access.visible_conversations(request.user).filter(pk=parsed).first() if parsed else None
    )
    if conversation is None:
        raise ApiError(404, "conversation_not_found", "No such conversation.")
    if not access.may_listen(request.user, conversation):
        raise ApiError(403, "listen_not_allowed", "Your role can see this call but not listen.")
    ensure_listenable(conversation)
    return conversation


def _audit_remote(
    request: HttpRequest, conversation: Conversation, fields: dict[str, str], via: str
) -> None:
    claims = jwt.decode(fields["token"], options={"verify_signature": False})
    ListenSession.objects.update_or_create(
        listener_identity=claims["sub"],
        defaults={
            "conversation": conversation,
            "user": request.user if request.user.is_authenticated else None,
            "via": via,
            "expires_at": dt.datetime.fromtimestamp(claims["exp"], tz=dt.UTC),
            "client_ip": client_ip(request),
            "user_agent": request.headers.get("User-Agent", "")[:500],
        },
    )


def listen_token(request: HttpRequest, conversation_id: str) -> JsonResponse:
    if request.method != "POST":
        return error_response(405, "method_not_allowed", "Use POST.", {"Allow": "POST"})
    if not request.user.is_authenticated:
        return error_response(401, "not_authenticated", "Sign in to listen.")
    # The admin's listen page audits as "admin"; only staff can claim it.
    via = (
        ListenVia.ADMIN
        if request.GET.get("via") == "admin" and request.user.is_staff
        else (ListenVia.PORTAL)
    )
    try:
        conversation = _conversation_for(request, conversation_id)
        remote = listen_settings.REMOTE_MINT
        if remote:
            fields = mint_remotely(remote, str(conversation.pk))
            _audit_remote(request, conversation, fields, via)
        else:
            fields = mint_listener_token(
                conversation,
                via=via,
                user=request.user,
                client_ip=client_ip(request),
                user_agent=request.headers.get("User-Agent", ""),
            ).as_response()
    except ApiError as exc:
        return exc.as_response()
    response = JsonResponse(fields)
    response["Cache-Control"] = "no-store"
    return response
