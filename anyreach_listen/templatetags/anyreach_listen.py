"""``{% load anyreach_listen %}``: the SDK script tag and the listen panel for any page.

{% listen_assets %}              in <head>: SDK, event stream, panel script and styles (once)
{% listen_events_script %}       only the event stream (pages with live lists but no panel)
{% listen_panel conversation %}  the panel: Listen, Mute, Stop, state, live transcript
{% listen_panel conversation transcript=segments %}
                                 … opening with the recorded lines so far (the caller has
                                 checked the right to read them and audited the read)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django import template
from django.core.exceptions import ImproperlyConfigured
from django.middleware.csrf import get_token
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import format_html

from anyreach_listen.access import policy as access
from anyreach_listen.models import Conversation
from anyreach_listen.routing import events_path

if TYPE_CHECKING:
    from anyreach_listen.transcripts import SegmentOut

register = template.Library()


def _nonce_attr(context: template.Context | None) -> str:
    """`` nonce="…"`` when the page has a CSP nonce (Django's ``csp`` context processor puts
    ``csp_nonce`` in the context), so the tags work under a nonce-based script-src too."""
    nonce = context.get("csp_nonce") if context is not None else None
    return format_html(' nonce="{}"', nonce) if nonce is not None else ""


@register.simple_tag(takes_context=True)
def listen_sdk_script(context: template.Context | None = None) -> str:
    """The SDK's script tag (async: it registers ``window.AnyReach`` when it arrives)."""
    return format_html(
        '<script src="{}" data-anyreach-sdk async{}></script>',
        reverse("anyreach_listen:listen-sdk"),
        _nonce_attr(context),
    )


@register.simple_tag(takes_context=True)
def listen_events_script(context: template.Context | None = None) -> str:
    """The conversation event stream's script: one websocket per page, re-dispatched as
    ``anyreach:conversation`` / ``anyreach:alert`` / ``anyreach:transcript`` /
    ``anyreach:guidance`` /
    ``anyreach:stream-open`` / ``anyreach:stream-closed`` DOM events. The websocket's
    path comes from the app's routing."""
    return format_html(
        '<script src="{}" data-arl-events-url="{}" defer{}></script>',
        static("anyreach_listen/events.js"),
        events_path(),
        _nonce_attr(context),
    )


@register.simple_tag(takes_context=True)
def listen_assets(context: template.Context | None = None) -> str:
    """Everything a page with listen panels needs, in ``<head>``, once per page: the SDK,
    the event stream (panels end themselves when their call ends), the panel script and
    its styles. Every script carries the page's CSP nonce when it has one."""
    return format_html(
        '{}{}<script src="{}" defer{}></script><link rel="stylesheet" href="{}">',
        listen_sdk_script(context),
        listen_events_script(context),
        static("anyreach_listen/panel/listen-panel.js"),
        _nonce_attr(context),
        static("anyreach_listen/panel/listen-panel.css"),
    )


@register.inclusion_tag("anyreach_listen/listen_panel.html", takes_context=True)
def listen_panel(
    context: template.Context,
    conversation: Conversation,
    compact: bool = False,
    via: str = "portal",
    autoconnect: bool = True,
    transcript: Sequence[SegmentOut] | None = None,
) -> dict[str, Any]:
    request = context.get("request")
    if request is None:
        raise ImproperlyConfigured(
            "{% listen_panel %} needs the request in its template context: add "
            "'django.template.context_processors.request' to your template settings' "
            "context_processors and render with a request."
        )
    token_url = reverse("anyreach_listen:user-listen-token", args=[conversation.pk])
    if via == "admin":
        token_url += "?via=admin"
    refusal = access.for_request(request).listen_refusal(conversation)
    return {
        "conversation": conversation,
        "can_listen": refusal is None,
        "listen_refusal": refusal,
        "token_url": token_url,
        "csrf_token": get_token(request),
        "compact": compact,
        "autoconnect": autoconnect and conversation.is_active,
        # Only in a panel that may listen: whoever may listen may read transcripts
        # (the capability table grants both to the same roles), and a read-only panel
        # has no transcript list.
        "transcript": transcript if refusal is None else None,
    }
