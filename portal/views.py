"""The supervisor portal: live dashboard, conversation page, listen wall, history."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.decorators import login_required
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_cache_control
from django.views.decorators.cache import cache_control
from django_htmx.middleware import HtmxDetails

from anyreach_listen import transcripts
from anyreach_listen.access import policy as access
from anyreach_listen.access.roles import Capability
from anyreach_listen.models import (
    Conversation,
    ConversationStatus,
    ListenSession,
    Team,
    TranscriptVia,
)

from . import assist, live, paging, takeover, transcript

WALL_LIMIT = 8


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _filtered(request: HttpRequest) -> tuple[QuerySet[Conversation], dict[str, str]]:
    """The calls the user may see that match the page's filters (unordered), and the filters."""
    filters = {
        "status": request.GET.get("status", "live"),
        "team": request.GET.get("team", ""),
        "agent": request.GET.get("agent", ""),
        "q": request.GET.get("q", "").strip(),
    }
    policy = access.for_request(request)
    conversations = policy.conversations()
    if filters["status"] == "live":
        conversations = conversations.active()
    elif filters["status"] in ConversationStatus.values:
        conversations = conversations.filter(status=filters["status"])
    if filters["team"]:
        conversations = conversations.filter(team__name=filters["team"])
    if filters["agent"]:
        conversations = conversations.filter(agent_label=filters["agent"])
    if filters["q"]:
        q = filters["q"]
        conversations = conversations.filter(
            Q(caller_label__icontains=q)
            | Q(agent_label__icontains=q)
            | Q(livekit_room__icontains=q)
        )
    return conversations, filters


def _rows(
    request: HttpRequest, matching: QuerySet[Conversation], asked: int
) -> QuerySet[Conversation]:
    """The first ``asked`` of the ``matching`` calls, newest first, as the rows show them."""
    policy = access.for_request(request)
    order = ("-started_at", "-created_at")
    page = matching.order_by(*order)[:asked]
    # Alerts and last lines are subqueries of the one rows query (a flat query count),
    # run for the page's rows only: annotating before the LIMIT would run them for
    # every visible call before the sort.
    rows = Conversation.objects.filter(pk__in=page.values("pk")).select_related(
        "organization", "team"
    )
    counted = live.with_takeovers(live.with_listeners(live.with_alerts(rows), policy), policy)
    return live.with_last_line(counted, policy).order_by(*order)


@login_required
def dashboard(request: HtmxHttpRequest) -> HttpResponse:
    matching, filters = _filtered(request)
    policy = access.for_request(request)
    window = paging.RowsWindow(paging.rows_asked(request), matching.count())
    conversations = list(_rows(request, matching, window.asked))
    # The rows' last lines are what was said: audited glances (at most a row an hour
    # per call and person, one call for the whole page), before they are shown.
    live.audit_last_lines(request, conversations)
    context: dict[str, Any] = {
        "conversations": conversations,
        # How many rows of how many matching calls, and "Show more" (portal/paging.py).
        "window": window,
        "filters": filters,
        # The "Last line" column only for people who may read some call's transcript.
        "reads_transcripts": bool(live.readable_organizations(policy)),
        # The "Listening" column only for people who may see some call's listeners.
        "sees_listeners": bool(policy.organizations_with(Capability.SEE_LISTENERS)),
        # The listen dialog offers "Take over" to people who may take some call over.
        "takes_over": takeover.takes_over_anywhere(policy),
    }
    context["columns"] = 7 + context["reads_transcripts"] + context["sees_listeners"]
    if not request.htmx:  # the whole page: its filters too
        visible = policy.conversations()
        context.update(
            {
                "statuses": ConversationStatus.choices,
                # order_by: Team's default ordering would add columns to the DISTINCT.
                "teams": Team.objects.filter(conversations__in=visible)
                .order_by("name")
                .values_list("name", flat=True)
                .distinct(),
                "agents": visible.exclude(agent_label="")
                .order_by("agent_label")
                .values_list("agent_label", flat=True)
                .distinct(),
            }
        )
    template = "portal/_conversation_rows.html" if request.htmx else "portal/dashboard.html"
    response = render(request, template, context)
    if context["reads_transcripts"]:  # what was said: never kept by a cache
        patch_cache_control(response, no_store=True)
    if context["takes_over"] and not request.htmx:
        takeover.allow_takeover(response)
    return response


@login_required
def listen_dialog(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """A listen panel for the dashboard's dialog (an alert's Listen): the transcript so
    far (an audited read), audio started by the page within the click."""
    policy = access.for_request(request)
    conversation = policy.find(conversation_id)
    if conversation is None:
        raise Http404("No such conversation.")
    refusal = policy.listen_refusal(conversation)
    if refusal is not None:  # the notice offers no Listen then; a direct request gets why
        return HttpResponse(refusal, status=403, content_type="text/plain")
    segments = transcripts.read(
        conversation, via=TranscriptVia.PORTAL, audit=policy.audit_fields, request=request
    )
    response = render(
        request,
        "portal/_listen_dialog.html",
        {
            "conversation": conversation,
            # Whoever may listen may read the transcript: guidance given shows inline, and
            # so do takeovers (assist.js puts them in the panel).
            "transcript": transcript.with_guidance(conversation, segments),
            "takeover_marks": transcript.takeover_marks(conversation),
            **assist.page_context(policy, conversation),
        },
    )
    patch_cache_control(response, no_store=True)  # the transcript so far
    return response


@login_required
def conversation_detail(request: HttpRequest, conversation_id: str) -> HttpResponse:
    policy = access.for_request(request)
    conversation = policy.find(conversation_id)
    if conversation is None:
        raise Http404("No such conversation.")
    sessions = ListenSession.objects.none()
    if policy.can_manage(conversation.organization_id):  # the audit is for org admins
        sessions = conversation.listen_sessions.select_related("user", "api_key")[:20]
    # None for viewers; otherwise an audited read (portal/transcript.py).
    shown = transcript.page_transcript(request, policy, conversation)
    context = {
        "conversation": conversation,
        "listen_sessions": sessions,
        "transcript": shown,
        "transcript_reads": transcript.reads_for_admins(policy, conversation),
        # Who took the call over, when, and how it ended: for who sees presence.
        "takeovers": takeover.for_page(policy, conversation),
        **assist.page_context(policy, conversation),
    }
    response = render(request, "portal/conversation.html", context)
    if shown is not None:  # what was said: never kept by a cache
        patch_cache_control(response, no_store=True)
    if context["takes_over"]:
        takeover.allow_takeover(response)
    return response


def _wall_conversations(request: HttpRequest) -> QuerySet[Conversation]:
    """Live calls with a room that the user may hear, newest first, with their alerts."""
    calls = access.for_request(request).listenable().active()
    return live.with_alerts(calls.filter(livekit_room__isnull=False).order_by("-started_at"))


@login_required
@cache_control(no_store=True)  # the tiles' transcripts
def wall(request: HttpRequest) -> HttpResponse:
    policy = access.for_request(request)
    tiles = live.wall_tiles(request, policy, list(_wall_conversations(request)[:WALL_LIMIT]))
    return render(request, "portal/wall.html", {"tiles": tiles, "limit": WALL_LIMIT})


@login_required
@cache_control(no_store=True)
def wall_tile(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """One tile, fetched by the wall's script when a new call starts."""
    conversation = _wall_conversations(request).filter(pk=conversation_id).first()
    if conversation is None:
        raise Http404("Not a live call you may hear.")
    (tile,) = live.wall_tiles(request, access.for_request(request), [conversation])
    return render(request, "portal/_wall_tile.html", {"tile": tile})


@login_required
def history(request: HttpRequest) -> HttpResponse:
    policy = access.for_request(request)
    admin_orgs = policy.organizations_with(Capability.MANAGE_ORGANIZATION)
    sessions = ListenSession.objects.filter(
        Q(user=request.user) | Q(conversation__organization_id__in=admin_orgs)
    ).select_related("conversation", "user", "api_key")[:200]
    return render(
        request,
        "portal/history.html",
        {
            "sessions": sessions,
            "sees_everyone": bool(admin_orgs),
            # Transcript reads are the org admins' audit, like the listen sessions of others.
            "transcript_reads": transcript.reads_in(admin_orgs),
            # Takeovers: one's own, and everyone's for org admins (like listen sessions).
            "takeovers": takeover.for_history(request, admin_orgs),
            "takes_over": takeover.takes_over_anywhere(policy),
        },
    )
