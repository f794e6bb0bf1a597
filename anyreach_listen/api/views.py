"""The REST API under ``/core/``: listener tokens (the contract), conversations, their
transcripts, alerts, listeners, guidance and takeovers, and alert rules.

Every endpoint runs the same checks in the same order, each with its own status and
stable code. Each view declares what it needs (``@requires``: a capability of the table
in ``roles.py``), checked before any conversation is looked up, so a credential
without it learns nothing about which conversations exist.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest, JsonResponse
from django.utils.dateparse import parse_datetime
from django.views.decorators.cache import cache_control

from anyreach_listen import alerts, conversations, transcripts
from anyreach_listen.access import policy as access
from anyreach_listen.access.policy import CredentialAccess
from anyreach_listen.api import payloads
from anyreach_listen.api.errors import ApiError, Errors, endpoint
from anyreach_listen.api.payloads import Field, conversation_json
from anyreach_listen.api.permissions import (
    GUIDE,
    LISTEN,
    READ,
    READ_RULES,
    READ_TAKEOVER,
    READ_TRANSCRIPTS,
    SEE_LISTENERS,
    TAKE_OVER,
    WRITE,
    WRITE_RULES,
    requires,
)
from anyreach_listen.assist import guidance, presence, signing, takeover
from anyreach_listen.conf import listen_settings
from anyreach_listen.disclosure import audit_api_read, credential_label
from anyreach_listen.events import live_takeover
from anyreach_listen.listening.minting import grant_listen
from anyreach_listen.models import (
    ACTIVE_STATUSES,
    Alert,
    AlertRole,
    AlertRule,
    AlertSeverity,
    Conversation,
    ConversationStatus,
    GuidanceMode,
    ListenVia,
    PersonalAccessToken,
    Team,
)
from anyreach_listen.recorder.wire import MAX_LABEL, storable

MAX_PAGE_SIZE = 200
# Pages of a transcript, a call's alerts and the alert rules: default and largest size.
READ_PAGE_SIZE = 200
MAX_READ_PAGE_SIZE = 500


def _found(caller: CredentialAccess, conversation_id: str, *, lock: bool = False) -> Conversation:
    """The caller's conversation by id, or 404; ``lock``: its row locked until the
    caller's transaction ends."""
    conversation = caller.find(conversation_id, lock=lock)
    if conversation is None:
        raise ApiError(Errors.CONVERSATION_NOT_FOUND)
    return conversation


@endpoint("POST")
@cache_control(no_store=True)
@requires(POST=LISTEN, keep_keys=True)  # the hot path: grant_listen confirms a kept key
def listener_token(
    request: HttpRequest, caller: CredentialAccess, conversation_id: str
) -> JsonResponse:
    # One transaction from the lookup to the audit row: the call is read once, locked,
    # and grant_listen need not read it again to see that it is still active in its room.
    with transaction.atomic():
        conversation = _found(caller, conversation_id, lock=True)
        grant = grant_listen(
            conversation,
            via=ListenVia.API,
            audit=caller.audit_fields,
            request=request,
            locked=True,
            kept_key=caller.kept_key,
        )
    return JsonResponse(grant.as_response())


# --- conversations -----------------------------------------------------------------------

_STATUS = payloads.choice(sorted(ACTIVE_STATUSES))
CREATE_FIELDS: dict[str, Field] = {
    "room_name": payloads.ID,
    "status": _STATUS,
    "team_id": payloads.ID,
    "agent_label": payloads.LABEL,
    "caller_label": payloads.LABEL,
    "metadata": payloads.METADATA,
    "external_id": payloads.ID,
}
UPDATE_FIELDS: dict[str, Field] = {
    "status": payloads.choice(ConversationStatus.values),
    "room_name": payloads.ID,
    "team_id": payloads.ID,
    "agent_label": payloads.LABEL,
    "caller_label": payloads.LABEL,
    "metadata": payloads.METADATA,
}


def _team(caller: CredentialAccess, team_id: str | None) -> Team | None:
    if team_id is None:
        return None
    parsed = access.parse_uuid(team_id)
    team = (
        Team.objects.filter(pk=parsed, organization=caller.organization).first() if parsed else None
    )
    if team is None:
        raise ApiError(Errors.INVALID_TEAM)
    return team


@endpoint("GET", "POST")
@cache_control(no_store=True)
@requires(GET=READ, POST=WRITE)
def conversation_collection(request: HttpRequest, caller: CredentialAccess) -> JsonResponse:
    if request.method == "GET":
        return _list(request, caller)
    data = payloads.clean(payloads.read_object(request), CREATE_FIELDS)
    team = _team(caller, data.pop("team_id", None))
    conversation, created = conversations.register(
        caller.organization, team=team, **{k: v for k, v in data.items() if v is not None}
    )
    return JsonResponse(conversation_json(conversation), status=201 if created else 200)


@endpoint("GET", "PATCH")
@cache_control(no_store=True)
@requires(GET=READ, PATCH=WRITE)
def conversation_detail(
    request: HttpRequest, caller: CredentialAccess, conversation_id: str
) -> JsonResponse:
    conversation = _found(caller, conversation_id)
    if request.method == "GET":
        return JsonResponse(conversation_json(conversation))
    data = payloads.clean(payloads.read_object(request), UPDATE_FIELDS)
    set_team = "team_id" in data
    team = _team(caller, data.pop("team_id", None))
    if data.get("room_name") is None:
        data.pop("room_name", None)
    updated = conversations.update(conversation, team=team, set_team=set_team, **data)
    return JsonResponse(conversation_json(updated))


def _page_size(
    request: HttpRequest, maximum: int = MAX_PAGE_SIZE, default: int | None = None
) -> int:
    raw = request.GET.get("limit")
    if raw is None:
        return int(listen_settings.PAGE_SIZE) if default is None else default
    # isascii: str.isdigit() accepts digits such as "²" that int() refuses.
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
        raise ApiError(Errors.INVALID_FIELD, f"limit must be 1 to {maximum}.")
    return int(raw)


def _cursor(value: str) -> tuple[dt.datetime, uuid.UUID]:
    """The position after which a page starts: (created_at, id) of the last row seen."""
    try:
        created, pk = json.loads(base64.urlsafe_b64decode(value.encode()))
        moment, parsed = parse_datetime(created), uuid.UUID(pk)
        # Ours are UTC; another offset could leave the datetime range when converted.
        if moment is not None:
            moment = moment.astimezone(dt.UTC) if moment.tzinfo else None
    except (binascii.Error, ValueError, TypeError, OverflowError, RecursionError):
        moment = None
    if moment is None:
        raise ApiError(Errors.INVALID_FIELD, "cursor is not one this API gave out.")
    return moment, parsed


def _next_cursor(conversation: Conversation) -> str:
    return _keyset_cursor(conversation.created_at, conversation.pk)


def _keyset_cursor(moment: dt.datetime, pk: uuid.UUID) -> str:
    position = [payloads.iso(moment), str(pk)]
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def _next_url(request: HttpRequest, cursor: str) -> str:
    """This request's URL with ``cursor`` (its other parameters kept)."""
    query = request.GET.copy()
    query["cursor"] = cursor
    return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")


def _read_page_size(request: HttpRequest) -> int:
    """The page size of a transcript, alert or rule read; its query takes nothing else
    than ``limit`` and ``cursor`` (a typo such as ``limt`` is refused, not ignored)."""
    unknown = sorted(set(request.GET) - {"limit", "cursor"})
    if unknown:
        raise ApiError(
            Errors.UNKNOWN_FIELD, f"Unknown query parameter(s): {', '.join(unknown)}."[:300]
        )
    return _page_size(request, MAX_READ_PAGE_SIZE, READ_PAGE_SIZE)


def _read_page(
    request: HttpRequest, rows: QuerySet[Any], moment: str
) -> tuple[list[Any], str | None]:
    """One page of ``rows``, oldest first by (``moment``, id), from the request's cursor,
    and the next page's URL (None on the last page)."""
    size = _read_page_size(request)
    if "cursor" in request.GET:
        after, after_id = _cursor(request.GET["cursor"])
        rows = rows.filter(Q(**{f"{moment}__gt": after}) | Q(**{moment: after, "id__gt": after_id}))
    page = list(rows.order_by(moment, "id")[: size + 1])
    if len(page) <= size:
        return page, None
    last = page[size - 1]
    return page[:size], _next_url(request, _keyset_cursor(getattr(last, moment), last.pk))


def _list(request: HttpRequest, caller: CredentialAccess) -> JsonResponse:
    rows = caller.conversations()
    status = request.GET.get("status")
    if status == "active":
        rows = rows.active()
    elif status is not None:
        if status not in ConversationStatus.values:
            raise ApiError(
                Errors.INVALID_FIELD,
                "status must be active or one of " + ", ".join(ConversationStatus.values) + ".",
            )
        rows = rows.filter(status=status)
    if "team_id" in request.GET:
        rows = rows.filter(team=_team(caller, request.GET["team_id"]))
    if "external_id" in request.GET:
        external_id = request.GET["external_id"]
        if not storable(external_id):
            raise ApiError(Errors.INVALID_FIELD, "external_id must not contain NUL characters.")
        rows = rows.filter(external_id=external_id)
    if "cursor" in request.GET:
        after, after_id = _cursor(request.GET["cursor"])
        rows = rows.filter(Q(created_at__lt=after) | Q(created_at=after, id__lt=after_id))
    size = _page_size(request)
    page = list(rows.order_by("-created_at", "-id")[: size + 1])
    next_url = None
    if len(page) > size:
        page = page[:size]
        next_url = _next_url(request, _next_cursor(page[-1]))
    return JsonResponse(payloads.conversation_page_json(page, next_url))


# --- transcripts -------------------------------------------------------------------------


# A transcript page resumes after a spoken position (segments are numbered 1, 2, … per
# call, gapless): segments recorded meanwhile land on later pages, none twice.
_MAX_POSITION = 2**31 - 1  # PositiveIntegerField; larger ints overflow SQLite's binding


def _position_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([position]).encode()).decode()


def _position(value: str) -> int:
    try:
        (position,) = json.loads(base64.urlsafe_b64decode(value.encode()))
    except (binascii.Error, ValueError, TypeError, RecursionError):
        position = None
    # bool is an int: a cursor of [true] is not one we gave out.
    if type(position) is not int or not 0 <= position <= _MAX_POSITION:
        raise ApiError(Errors.INVALID_FIELD, "cursor is not one this API gave out.")
    return position


def _audit_read(caller: CredentialAccess, conversation: Conversation, request: HttpRequest) -> None:
    """A transcript page or alert list is a read of what was said (audited by ``disclosure``)."""
    audit = caller.audit_fields
    audit_api_read(
        conversation.pk,
        reader=caller.rate_limit_bucket,
        audit=audit,
        credential_label=credential_label(audit),
        request=request,
    )


def _transcript_page(
    request: HttpRequest, caller: CredentialAccess, conversation: Conversation
) -> JsonResponse:
    size = _read_page_size(request)
    after = _position(request.GET["cursor"]) if "cursor" in request.GET else 0
    _audit_read(caller, conversation, request)
    segments = transcripts.segments(conversation, after=after, limit=size + 1)
    next_url = None
    if len(segments) > size:
        segments = segments[:size]
        next_url = _next_url(request, _position_cursor(segments[-1].position))
    complete = not conversation.is_active
    return JsonResponse(
        payloads.transcript_page_json(segments, complete=complete, next_url=next_url)
    )


@endpoint("GET", "POST")
@cache_control(no_store=True)
@requires(GET=READ_TRANSCRIPTS, POST=WRITE)
def transcript(
    request: HttpRequest, caller: CredentialAccess, conversation_id: str
) -> JsonResponse:
    conversation = _found(caller, conversation_id)
    if request.method == "GET":
        return _transcript_page(request, caller, conversation)
    updates = payloads.transcript_updates(payloads.read_object(request))
    result = transcripts.record(conversation, updates)
    return JsonResponse(
        payloads.push_result_json(result.recorded, result.unchanged, len(result.alerts))
    )


@endpoint("GET")
@cache_control(no_store=True)
@requires(GET=READ_TRANSCRIPTS)
def conversation_alerts(
    request: HttpRequest, caller: CredentialAccess, conversation_id: str
) -> JsonResponse:
    conversation = _found(caller, conversation_id)
    rows = Alert.objects.filter(conversation=conversation).select_related("rule", "segment")
    # A bad limit or cursor is refused here, before any audit: it disclosed nothing.
    page, next_url = _read_page(request, rows, "raised_at")
    # Audited even when empty ("nothing was said that matched" is about the call too).
    _audit_read(caller, conversation, request)
    return JsonResponse(payloads.alert_list_json(page, next_url))


# --- alert rules -------------------------------------------------------------------------


def _phrase(value: Any) -> Any:
    if not isinstance(value, str) or len(value) > MAX_LABEL or not storable(value):
        raise ValueError
    if not alerts.valid_phrase(value):
        raise ValueError
    return value


RULE_FIELDS: dict[str, Field] = {
    "phrase": Field(
        _phrase,
        f"a string of at most {MAX_LABEL} characters with a word in it",
        {"type": "string", "minLength": 1, "maxLength": MAX_LABEL},
    ),
    "role": payloads.choice(AlertRole.values),
    "severity": payloads.choice(AlertSeverity.values),
    "team_id": payloads.ID,
}


def _created_by(caller: CredentialAccess) -> tuple[Any, str]:
    """The user (for a PAT) and the words that name who created a rule."""
    credential = caller.credential
    if isinstance(credential, PersonalAccessToken):
        return credential.user, f"{credential.user.get_username()} (PAT {credential})"
    return None, f"API key {credential}"


@endpoint("GET", "POST")
@cache_control(no_store=True)
@requires(GET=READ_RULES, POST=WRITE_RULES)
def alert_rule_collection(request: HttpRequest, caller: CredentialAccess) -> JsonResponse:
    if request.method == "GET":
        rules = AlertRule.objects.live().filter(organization=caller.organization)
        page, next_url = _read_page(request, rules, "created_at")
        return JsonResponse(payloads.alert_rule_list_json(page, next_url))
    data = payloads.clean(payloads.read_object(request), RULE_FIELDS)
    if "phrase" not in data:
        raise ApiError(Errors.INVALID_FIELD, "phrase is required.")
    team = _team(caller, data.get("team_id"))
    user, label = _created_by(caller)
    rule = alerts.create_rule(
        caller.organization,
        phrase=data["phrase"],
        role=data.get("role", AlertRole.ANY),
        severity=data.get("severity", AlertSeverity.WARNING),
        team=team,
        created_by=user,
        created_by_label=label,
    )
    return JsonResponse(payloads.alert_rule_json(rule), status=201)


@endpoint("DELETE")
@cache_control(no_store=True)
@requires(DELETE=WRITE_RULES)
def alert_rule_detail(request: HttpRequest, caller: CredentialAccess, rule_id: str) -> JsonResponse:
    parsed = access.parse_uuid(rule_id)
    rule = (
        AlertRule.objects.live().filter(pk=parsed, organization=caller.organization).first()
        if parsed
        else None
    )
    if rule is None:
        raise ApiError(Errors.ALERT_RULE_NOT_FOUND)
    return JsonResponse(payloads.alert_rule_json(alerts.delete_rule(rule)))


# --- acting on a call: who listens now, guidance to the agent -----------------------------


@endpoint("GET")
@cache_control(no_store=True)
@requires(GET=SEE_LISTENERS)
def conversation_listeners(
    request: HttpRequest, caller: CredentialAccess, conversation_id: str
) -> JsonResponse:
    conversation = _found(caller, conversation_id)
    return JsonResponse(payloads.listener_list_json(presence.listeners_now(conversation)))


GUIDANCE_FIELDS: dict[str, Field] = {
    "mode": payloads.choice(GuidanceMode.values),
    "text": Field(
        guidance.check_text,
        f"a string of 1 to {signing.MAX_TEXT} characters, not blank",
        {"type": "string", "minLength": 1, "maxLength": signing.MAX_TEXT},
    ),
}


@transaction.non_atomic_requests  # guidance.give commits its audit row before sending
@endpoint("GET", "POST")
@cache_control(no_store=True)
@requires(GET=READ_TRANSCRIPTS, POST=GUIDE)
def conversation_guidance(
    request: HttpRequest, caller: CredentialAccess, conversation_id: str
) -> JsonResponse:
    conversation = _found(caller, conversation_id)
    if request.method == "GET":
        # Guidance sits on the call's transcript: reading it is a transcript read.
        _audit_read(caller, conversation, request)
        return JsonResponse(payloads.guidance_list_json(guidance.for_call(conversation)))
    data = payloads.clean(payloads.read_object(request), GUIDANCE_FIELDS)
    missing = [name for name in GUIDANCE_FIELDS if name not in data]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ApiError(Errors.INVALID_FIELD, f"{' and '.join(missing)} {verb} required.")
    given = guidance.give(
        conversation,
        mode=data["mode"],
        text=data["text"],
        audit=caller.audit_fields,
        request=request,
    )
    return JsonResponse(payloads.guidance_json(given), status=201)


# A takeover's POST takes no fields: an empty object or no body (renewal is the same call).
TAKEOVER_FIELDS: dict[str, Field] = {}


@transaction.non_atomic_requests  # take_over commits its row before the agent is paused
@endpoint("GET", "POST", "DELETE")
@cache_control(no_store=True)
@requires(GET=READ_TAKEOVER, POST=TAKE_OVER, DELETE=TAKE_OVER)
def conversation_takeover(
    request: HttpRequest, caller: CredentialAccess, conversation_id: str
) -> JsonResponse:
    conversation = _found(caller, conversation_id)
    if request.method == "GET":
        held = takeover.held(conversation)
        if held is None:
            raise ApiError(Errors.TAKEOVER_NOT_FOUND)
        return JsonResponse(live_takeover(held).as_json())
    if request.method == "DELETE":
        # Whoever may take the call over may hand it back (an admin ending a forgotten one).
        return JsonResponse(live_takeover(takeover.hand_back(conversation)).as_json())
    payloads.clean(payloads.read_object(request), TAKEOVER_FIELDS)
    grant = takeover.take_over(conversation, audit=caller.audit_fields, request=request)
    return JsonResponse(grant.as_response(), status=200 if grant.renewed else 201)
