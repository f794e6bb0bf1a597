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
from django.views.decorators.csrf import csrf_protect

from . import access, ratelimit
from .api import client_ip
from .conf import listen_settings
from .errors import ApiError, error_response
from .minting import ensure_listenable, mint_listener_token
from .models import Conversation, ListenSession, ListenVia
from .remote_minting import mint_remotely


def _visible_listenable(request: HttpRequest, conversation_id: str) -> Conversation:
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
    return conversation


def _audit_remote(
    request: HttpRequest, conversation: Conversation, fields: dict[str, str], via: str
) -> None:
    try:
        claims = jwt.decode(fields["token"], options={"verify_signature": False})
        identity, exp = str(claims["sub"]), int(claims["exp"])
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        raise ApiError(
            502, "remote_invalid", "The listening service answered with an unusable token."
        ) from None
    # get_or_create: a remote answer must never rewrite an existing audit row.
    ListenSession.objects.get_or_create(
        listener_identity=identity,
        defaults={
            "conversation": conversation,
            "user": request.user if request.user.is_authenticated else None,
            "via": via,
            "expires_at": dt.datetime.fromtimestamp(exp, tz=dt.UTC),
            "client_ip": client_ip(request),
            "user_agent": request.headers.get("User-Agent", "")[:500],
        },
    )


@csrf_protect
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
        # The same budget as an API credential, counted per signed-in user.
        ratelimit.enforce(f"user:{request.user.pk}", "listen requests")
        conversation = _visible_listenable(request, conversation_id)
        remote = listen_settings.REMOTE_MINT
        if remote:
            # The platform owns the call's state (409/404); the local copy may lag.
            fields = mint_remotely(remote, str(conversation.pk))
            _audit_remote(request, conversation, fields, via)
        else:
            ensure_listenable(conversation)
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
