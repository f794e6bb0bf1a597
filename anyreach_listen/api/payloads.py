"""JSON bodies of the REST API: reading them strictly, and answering with the shapes of
``shapes.py`` (conversations, transcript segments, alert rules, alerts, their pages,
listeners, guidance).

Reading is strict so that bad input gets a clear error and changes nothing, and so
that every string stored is storable by every supported database. Each ``Field``
carries its JSON Schema: the OpenAPI request bodies come from the same tables.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from anyreach_listen.api import shapes
from anyreach_listen.api.body_limit import MAX_BODY, read_limited
from anyreach_listen.api.errors import ApiError, Errors
from anyreach_listen.events import live_alert, live_guidance, live_listener
from anyreach_listen.models import Alert, AlertRule, Conversation, Guidance, ListenSession

# The limits and ``storable`` live in ``recorder.wire`` (the worker shares them).
from anyreach_listen.recorder.wire import (
    MAX_LABEL,
    MAX_SEGMENT_TEXT,
    MAX_SEGMENTS,
    SEGMENT_FIELDS,
    NotStorable,
    SegmentIn,
    storable,
)
from anyreach_listen.transcripts import SegmentOut

MAX_METADATA = 16 * 1024
MAX_DEPTH = 32  # nesting of metadata (SQLite's JSON functions stop at 1,000)


JSON_MEDIA_TYPE = "application/json"


def read_object(request: HttpRequest) -> dict[str, Any]:
    """The request's JSON object body (an empty body is an empty object, whatever its
    Content-Type); over MAX_BODY: ``BodyTooLarge`` (413), never read past it. A body
    needs ``Content-Type: application/json`` (parameters allowed), else 415."""
    body = read_limited(request, MAX_BODY)
    if not body.strip():
        return {}
    media_type = getattr(request, "content_type", None) or ""  # lower-cased, no parameters
    if media_type != JSON_MEDIA_TYPE:
        raise ApiError(
            Errors.UNSUPPORTED_MEDIA_TYPE,
            f"Send the body as JSON with Content-Type: {JSON_MEDIA_TYPE}, "
            f"not {media_type or 'no Content-Type'}.",
        )
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ApiError(Errors.INVALID_JSON, "The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(Errors.INVALID_JSON)
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python accepts NaN and Infinity; JSON does not


def _storable_json(value: Any, depth: int = 0) -> bool:
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return all(storable(k) and _storable_json(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable_json(item, depth + 1) for item in value)
    return True


@dataclass(frozen=True)
class Field:
    """One accepted field: a check that returns the clean value or says what is wrong."""

    check: Callable[[Any], Any]
    describe: str  # what a valid value is, for the error message
    schema: dict[str, Any] = field(default_factory=dict)  # the same rule, as JSON Schema


def _string(max_length: int, *, nullable: bool = False) -> Field:
    def check(value: Any) -> Any:
        if value is None and nullable:
            return None
        if not isinstance(value, str) or len(value) > max_length or not storable(value):
            raise ValueError
        return value

    suffix = " or null" if nullable else ""
    schema = {"type": ["string", "null"] if nullable else "string", "maxLength": max_length}
    return Field(check, f"a string of at most {max_length} characters (no NUL){suffix}", schema)


def choice(choices: list[str]) -> Field:
    def check(value: Any) -> Any:
        if value not in choices:
            raise ValueError
        return value

    return Field(check, "one of " + ", ".join(choices), {"type": "string", "enum": list(choices)})


def _json_object(max_bytes: int) -> Field:
    def check(value: Any) -> Any:
        if not isinstance(value, dict) or not _storable_json(value):
            raise ValueError
        if len(json.dumps(value)) > max_bytes:
            raise ValueError
        return value

    describe = (
        f"a JSON object of at most {max_bytes // 1024} KB, {MAX_DEPTH} levels deep, "
        "without NUL characters"
    )
    return Field(
        check, describe, {"type": "object", "description": describe[0].upper() + describe[1:] + "."}
    )


LABEL = _string(MAX_LABEL)
ID = _string(MAX_LABEL, nullable=True)  # ids are checked against the database later
METADATA = _json_object(MAX_METADATA)


def clean(data: dict[str, Any], fields: dict[str, Field]) -> dict[str, Any]:
    """``data`` checked against ``fields``: unknown names first, then each value."""
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ApiError(Errors.UNKNOWN_FIELD, f"Unknown field(s): {', '.join(unknown)}.")
    cleaned: dict[str, Any] = {}
    for name, value in data.items():
        try:
            cleaned[name] = fields[name].check(value)
        except ValueError:
            raise ApiError(
                Errors.INVALID_FIELD, f"{name} must be {fields[name].describe}."
            ) from None
    return cleaned


def iso(moment: dt.datetime | None) -> str | None:
    """``shapes.utc_iso``, None for no time."""
    return None if moment is None else shapes.utc_iso(moment)


def conversation_shape(conversation: Conversation) -> shapes.Conversation:
    return shapes.Conversation(
        id=conversation.pk,
        organization_id=conversation.organization_id,
        team_id=conversation.team_id,
        status=conversation.status,
        room_name=conversation.livekit_room,
        agent_label=conversation.agent_label,
        caller_label=conversation.caller_label,
        metadata=conversation.metadata,
        external_id=conversation.external_id,
        started_at=conversation.started_at,
        ended_at=conversation.ended_at,
        created_at=conversation.created_at,
        updated_at=conversation.updated_at,
    )


def conversation_json(conversation: Conversation) -> dict[str, Any]:
    return conversation_shape(conversation).as_json()


def conversation_page_json(
    conversations: Iterable[Conversation], next_url: str | None
) -> dict[str, Any]:
    results = [conversation_shape(c) for c in conversations]
    return shapes.ConversationPage(results=results, next=next_url).as_json()


# --- transcripts and alerts --------------------------------------------------------------


def transcript_updates(data: dict[str, Any]) -> list[SegmentIn]:
    """``{"segments": [{"id", "role", "text", "final"}, …]}``, every segment checked
    strictly (all four fields, exact types: ``final`` is a JSON boolean)."""
    unknown = sorted(set(data) - {"segments"})
    if unknown:
        raise ApiError(Errors.UNKNOWN_FIELD, f"Unknown field(s): {', '.join(unknown)}.")
    items = data.get("segments")
    if not isinstance(items, list) or len(items) > MAX_SEGMENTS:
        raise ApiError(
            Errors.INVALID_FIELD, f"segments must be a list of at most {MAX_SEGMENTS} segments."
        )
    return [_segment(index, item) for index, item in enumerate(items)]


# Segments are parsed by their declaration (``wire.SegmentIn``, strict); the first
# failure, in the order below, is the answer.
_SEGMENT = TypeAdapter(SegmentIn)
_UNKNOWN = ("extra_forbidden", "unexpected_keyword_argument")  # a model's, a dataclass's
_SEGMENT_RULES = {
    "id": f"a string of 1 to {MAX_LABEL} characters",
    "role": "agent or user",
    "text": f"a string of at most {MAX_SEGMENT_TEXT} characters",
    "final": "true or false",
}


def _segment(index: int, item: Any) -> SegmentIn:
    where = f"segments[{index}]"
    if not isinstance(item, dict):
        raise ApiError(Errors.INVALID_FIELD, f"{where} must be an object.")
    try:
        return _SEGMENT.validate_python(item)
    except ValidationError as exc:
        raise _segment_error(where, exc.errors()) from None


def _segment_error(where: str, errors: list[ErrorDetails]) -> ApiError:
    by_field: dict[str, list[ErrorDetails]] = {}
    for error in errors:
        by_field.setdefault(str(error["loc"][0]), []).append(error)
    unknown = sorted(f for f, es in by_field.items() if es[0]["type"] in _UNKNOWN)
    if unknown:
        return ApiError(Errors.UNKNOWN_FIELD, f"Unknown field(s) in {where}: {', '.join(unknown)}.")
    missing = [
        f for f in SEGMENT_FIELDS if any(e["type"] == "missing" for e in by_field.get(f, []))
    ]
    if missing:
        return ApiError(Errors.INVALID_FIELD, f"{where} needs {', '.join(missing)}.")
    unstorable = {f for f, es in by_field.items() if any(_is_unstorable(e) for e in es)}
    # The id, role and text rules come before storability, which comes before final.
    for name in ("id", "role", "text"):
        if name in by_field and name not in unstorable:
            return ApiError(Errors.INVALID_FIELD, f"{where}.{name} must be {_SEGMENT_RULES[name]}.")
    if unstorable:
        return ApiError(Errors.INVALID_FIELD, f"{where} must not contain NUL characters.")
    return ApiError(Errors.INVALID_FIELD, f"{where}.final must be {_SEGMENT_RULES['final']}.")


def _is_unstorable(error: ErrorDetails) -> bool:
    return isinstance(error.get("ctx", {}).get("error"), NotStorable)


def segment_shape(segment: SegmentOut) -> shapes.TranscriptSegment:
    return shapes.TranscriptSegment(
        id=segment.id, role=segment.role, text=segment.text, final=segment.final, at=segment.at
    )


def transcript_page_json(
    segments: Iterable[SegmentOut], *, complete: bool, next_url: str | None
) -> dict[str, Any]:
    page = [segment_shape(s) for s in segments]
    return shapes.Transcript(segments=page, complete=complete, next=next_url).as_json()


def push_result_json(recorded: int, unchanged: int, alerts: int) -> dict[str, Any]:
    result = shapes.TranscriptPushResult(recorded=recorded, unchanged=unchanged, alerts=alerts)
    return result.as_json()


def alert_rule_shape(rule: AlertRule) -> shapes.AlertRule:
    return shapes.AlertRule(
        id=rule.pk,
        organization_id=rule.organization_id,
        team_id=rule.team_id,
        phrase=rule.phrase,
        role=rule.role,
        severity=rule.severity,
        created_by=rule.created_by_label or None,
        created_at=rule.created_at,
        deleted_at=rule.deleted_at,
    )


def alert_rule_json(rule: AlertRule) -> dict[str, Any]:
    return alert_rule_shape(rule).as_json()


def alert_rule_list_json(rules: Iterable[AlertRule], next_url: str | None) -> dict[str, Any]:
    page = [alert_rule_shape(r) for r in rules]
    return shapes.AlertRuleList(rules=page, next=next_url).as_json()


def alert_shape(alert: Alert) -> shapes.Alert:
    """The live alert (``events.live_alert``: never the segment text) and its call."""
    return shapes.Alert(**dict(live_alert(alert)), conversation_id=alert.conversation_id)


def alert_list_json(alerts: Iterable[Alert], next_url: str | None) -> dict[str, Any]:
    page = [alert_shape(a) for a in alerts]
    return shapes.AlertList(alerts=page, next=next_url).as_json()


# --- listeners and guidance --------------------------------------------------------------


def listener_list_json(sessions: Iterable[ListenSession]) -> dict[str, Any]:
    return shapes.ListenerList(listeners=[live_listener(s) for s in sessions]).as_json()


def guidance_json(guidance: Guidance) -> dict[str, Any]:
    return live_guidance(guidance).as_json()


def guidance_list_json(rows: Iterable[Guidance]) -> dict[str, Any]:
    return shapes.GuidanceList(guidance=[live_guidance(g) for g in rows]).as_json()
