"""The portal's side of Agent Assist: "Listening now" (with "Taken over by …") for who may
see a call's listeners, and the guidance box for who may guide its agent. The page's
live refresh and the rules: docs/supervisors.md; "Take over" is portal/takeover.py's."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_GET, require_POST

from anyreach_listen.access import policy as access
from anyreach_listen.access import ratelimit
from anyreach_listen.access.policy import UserAccess
from anyreach_listen.access.roles import Capability
from anyreach_listen.api.errors import ApiError
from anyreach_listen.assist import guidance, presence, signing, takeover
from anyreach_listen.models import Conversation, Guidance, GuidanceMode, GuidanceStatus

from . import takeover as portal_takeover
from .transcript import GuidanceLine

MAX_TEXT = signing.MAX_TEXT
# The page's script asks for the status fragment; a form posted without script gets
# the conversation page back with the status as a message. The fragments answer with
# the same header naming them: assist.js parses no other answer (a login or error page
# is never parsed).
FRAGMENT_HEADER = "X-Anyreach-Fragment"


@dataclass(frozen=True)
class Presence:
    """Who is in the call's room now, by the names a page shows."""

    conversation: Conversation
    names: list[str]
    taken_over_by: str = ""  # who speaks with the caller instead of the agent now

    @property
    def count(self) -> int:
        return len(self.names)


def sees_listeners(policy: UserAccess, conversation: Conversation) -> bool:
    return policy.can_on(Capability.SEE_LISTENERS, conversation)


def may_guide(policy: UserAccess, conversation: Conversation) -> bool:
    """The box shows only on a live call: guidance to an ended one cannot be delivered."""
    return conversation.is_active and policy.can_on(Capability.GUIDE_AGENT, conversation)


def presence_of(policy: UserAccess, conversation: Conversation) -> Presence | None:
    """The call's listeners now, or None for people who may not see them (viewers)."""
    if not sees_listeners(policy, conversation):
        return None
    names = [presence.display_name(s) for s in presence.listeners_now(conversation)]
    held = takeover.held(conversation) if conversation.is_active else None
    return Presence(conversation, names, held.display_name if held is not None else "")


def page_context(policy: UserAccess, conversation: Conversation) -> dict[str, Any]:
    """What the conversation page and the listen dialog show of Agent Assist."""
    return {
        "presence": presence_of(policy, conversation),
        "guides": may_guide(policy, conversation),
        "takes_over": portal_takeover.may_take_over(policy, conversation),
        "guidance_max": MAX_TEXT,
        "guidance_max_words": f"{MAX_TEXT:,}",
    }


def _visible(request: HttpRequest, conversation_id: uuid.UUID) -> tuple[UserAccess, Conversation]:
    policy = access.for_request(request)
    conversation = policy.find(conversation_id)
    if conversation is None:
        raise Http404("No such conversation.")
    return policy, conversation


@login_required
@require_GET
def conversation_presence(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """The presence line as a fragment, for the page's refetch on ``listener.updated``."""
    policy, conversation = _visible(request, conversation_id)
    shown = presence_of(policy, conversation)
    if shown is None:
        return HttpResponse(
            "Your role cannot see who listens to this call.", status=403, content_type="text/plain"
        )
    response = render(request, "portal/_presence.html", {"presence": shown})
    response[FRAGMENT_HEADER] = "presence"
    patch_cache_control(response, no_store=True)  # who listens changes by the second
    return response


def _form_error(mode: str, text: str) -> str | None:
    if mode not in GuidanceMode.values:
        return "Choose Whisper or Say now."
    if not text.strip():
        return "Write the guidance first."
    if len(text) > MAX_TEXT:
        return f"Guidance is at most {MAX_TEXT:,} characters ({len(text):,} written)."
    return None


# guidance.give commits its audit row before sending: no request transaction around it.
@transaction.non_atomic_requests
@login_required
@require_POST
def give_guidance(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """Send the box's text to the call's agent; answers the delivery status."""
    policy, conversation = _visible(request, conversation_id)
    if not policy.can_on(Capability.GUIDE_AGENT, conversation):
        return HttpResponse(
            "Your role cannot guide this call's agent.", status=403, content_type="text/plain"
        )
    mode = request.POST.get("mode", "")
    # Line endings as typed: a browser posts \r\n, which would count twice.
    text = request.POST.get("text", "").replace("\r\n", "\n").strip()
    sent: Guidance | None = None
    headers: dict[str, str] = {}
    error = _form_error(mode, text)
    status = 400
    if error is None:
        try:
            # The API's budget per credential, counted per signed-in user (as the
            # portal's listen tokens are): 429 with Retry-After when used up.
            ratelimit.enforce(f"user:{request.user.pk}", "guidance requests")
            sent = guidance.give(
                conversation, mode=mode, text=text, audit=policy.audit_fields, request=request
            )
            status = 201
        except ApiError as exc:
            error, status, headers = exc.message, exc.status, exc.headers
    context = {
        "guidance": sent,
        "error": error,
        # Its transcript line, shown at once (the event stream may be reconnecting).
        "line": [GuidanceLine.of(sent)] if sent is not None else None,
    }
    if request.headers.get(FRAGMENT_HEADER):
        response = render(request, "portal/_guidance_status.html", context, status=status)
        for name, value in {**headers, FRAGMENT_HEADER: "guidance-status"}.items():
            response[name] = value
        patch_cache_control(response, no_store=True)
        return response
    if error is None and sent is not None:
        messages.success(request, _summary(sent))
    else:
        messages.error(request, f"Guidance not delivered: {error}")
    return redirect(reverse("portal:conversation", args=[conversation.pk]))


def _summary(given: Guidance) -> str:
    what = "Whispered to the agent" if given.mode == GuidanceMode.WHISPER else "The agent says it"
    if given.status == GuidanceStatus.DELIVERED:
        return f"{what}: delivered."
    return f"{what}: {given.get_status_display().lower()}."
