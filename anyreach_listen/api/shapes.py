"""Every JSON shape the app answers or publishes, each declared once (pydantic models).

A shape gives the JSON (``Shape.as_json``), the live events' payloads (``events.py``) and
the OpenAPI schemas (``component_schemas``). Every time is written by ``utc_iso``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, models_json_schema
from pydantic_core import CoreSchema, core_schema

from anyreach_listen.models import (
    AlertRole,
    AlertSeverity,
    ConversationStatus,
    GuidanceMode,
    GuidanceStatus,
    ListenVia,
    TakeoverEnd,
)
from anyreach_listen.recorder.wire import MAX_LABEL, SPEAKER_ROLES


def utc_iso(moment: dt.datetime) -> str:
    """The one written form of a time: ISO 8601 in UTC with ``Z``, microseconds kept
    when there are any (cursors compare them)."""
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


UtcTime = Annotated[
    dt.datetime,
    PlainSerializer(utc_iso, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class OneOf:
    """``enum`` in the schema: the values a string field takes."""

    def __init__(self, values: Iterable[str]) -> None:
        self.values = list(values)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(schema), "enum": self.values}


Status = Annotated[str, OneOf(ConversationStatus.values)]
Severity = Annotated[str, OneOf(AlertSeverity.values)]
Speaker = Annotated[str, OneOf(SPEAKER_ROLES)]
NextUrl = Annotated[
    str | None,
    WithJsonSchema(
        {"type": ["string", "null"], "description": "The next page's URL; null on the last page."}
    ),
]


class Shape(BaseModel):
    """A JSON object with exactly these fields, all always present."""

    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)

    def as_json(self) -> dict[str, Any]:
        """The plain JSON object (UUIDs and times as strings): for answers and the
        channel layer alike."""
        return self.model_dump(mode="json")


# --- the REST API's answers --------------------------------------------------------------


class ListenerToken(Shape):
    """The listener-token response: the contract's four fields (docs/listen-sdk.md)."""

    url: Annotated[str, WithJsonSchema({"type": "string", "description": "LiveKit server URL."})]
    token: Annotated[
        str, WithJsonSchema({"type": "string", "description": "Subscribe-only listener JWT."})
    ]
    room_name: str
    expires_at: Annotated[UtcTime, Field(description="ISO 8601, UTC; equals the JWT's exp.")]


class Conversation(Shape):
    id: uuid.UUID
    organization_id: uuid.UUID
    team_id: uuid.UUID | None
    status: Status
    room_name: str | None
    agent_label: str
    caller_label: str
    metadata: dict[str, Any]
    external_id: str | None
    started_at: UtcTime | None
    ended_at: UtcTime | None
    created_at: UtcTime
    updated_at: UtcTime


class ConversationPage(Shape):
    results: list[Conversation]
    next: NextUrl


class LiveSegment(Shape):
    """A final line as browsers get it live (transcript readers only)."""

    id: str
    role: Speaker
    text: str
    at: Annotated[UtcTime, Field(description="When the segment was first seen.")]


class TranscriptSegment(LiveSegment):
    final: bool


class Transcript(Shape):
    segments: list[TranscriptSegment]
    complete: Annotated[
        bool, WithJsonSchema({"type": "boolean", "description": "The conversation has ended."})
    ]
    next: NextUrl


def _count(description: str) -> Any:
    return WithJsonSchema({"type": "integer", "minimum": 0, "description": description})


class TranscriptPushResult(Shape):
    recorded: Annotated[int, _count("Updates that changed the transcript.")]
    unchanged: Annotated[
        int,
        _count(
            "Updates already known (retries), older than what is stored, or for a segment "
            "already final."
        ),
    ]
    alerts: Annotated[int, _count("Alerts raised.")]


class LiveAlert(Shape):
    """An alert as browsers get it: never the segment's text. ``phrase``, ``role`` and
    ``segment_id`` reach only transcript readers (``consumers.py`` drops them)."""

    id: uuid.UUID
    rule_id: uuid.UUID
    severity: Severity
    phrase: str
    role: Speaker
    segment_id: str
    raised_at: UtcTime


class Alert(LiveAlert):
    """An alert for readers of the transcript: its rule's phrase, never the segment text."""

    conversation_id: uuid.UUID


class AlertList(Shape):
    alerts: list[Alert]
    next: NextUrl


class AlertRule(Shape):
    id: uuid.UUID
    organization_id: uuid.UUID
    team_id: Annotated[
        uuid.UUID | None,
        Field(description="Only this team's calls; none: every call of the organization."),
    ]
    phrase: Annotated[
        str,
        Field(
            description="Matched on word boundaries, ignoring case and punctuation; "
            "at least one word.",
            min_length=1,
            max_length=MAX_LABEL,
        ),
    ]
    role: Annotated[str, OneOf(AlertRole.values), Field(description="Whose words it watches.")]
    severity: Severity
    created_by: str | None
    created_at: UtcTime
    deleted_at: UtcTime | None


class AlertRuleList(Shape):
    rules: list[AlertRule]
    next: NextUrl


class Listener(Shape):
    """A listener in a call's room now (``assist/presence.py``)."""

    id: uuid.UUID
    via: Annotated[str, OneOf(ListenVia.values)]
    name: Annotated[
        str,
        WithJsonSchema(
            {
                "type": "string",
                "description": "A person's full name (else username); an API caller's credential.",
            }
        ),
    ]
    joined_at: UtcTime | None


class ListenerList(Shape):
    listeners: list[Listener]


class Guidance(Shape):
    """Guidance given to a call's AI agent (``assist/guidance.py``): the API's answers and
    the ``guidance.updated`` event's payload."""

    id: uuid.UUID
    mode: Annotated[str, OneOf(GuidanceMode.values)]
    text: str
    status: Annotated[str, OneOf(GuidanceStatus.values)]
    reason: Annotated[
        str, WithJsonSchema({"type": "string", "description": "Why it failed; empty otherwise."})
    ]
    author: Annotated[
        str,
        WithJsonSchema(
            {
                "type": "string",
                "description": "Who gave it: a person's full name (else username), or the "
                "credential.",
            }
        ),
    ]
    created_at: UtcTime
    delivered_at: UtcTime | None
    latency_ms: Annotated[
        int | None,
        WithJsonSchema(
            {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "From sending to the agent's acknowledgement.",
            }
        ),
    ]


class GuidanceList(Shape):
    guidance: list[Guidance]


class TakeoverToken(Shape):
    """A takeover's answer (``assist/takeover.py``): the listener token's four fields
    and the takeover's id. The token joins the call's room as a visible participant that
    may publish its microphone only."""

    id: uuid.UUID
    url: Annotated[str, WithJsonSchema({"type": "string", "description": "LiveKit server URL."})]
    token: Annotated[
        str,
        WithJsonSchema(
            {"type": "string", "description": "A visible participant's JWT: microphone only."}
        ),
    ]
    room_name: str
    expires_at: Annotated[
        UtcTime,
        Field(description="ISO 8601, UTC; equals the JWT's exp. Renew before it (POST again)."),
    ]


class Takeover(Shape):
    """A call taken over from its AI agent (``assist/takeover.py``): the API's answers and
    the ``takeover.updated`` event's payload."""

    id: uuid.UUID
    holder: Annotated[
        str,
        WithJsonSchema(
            {
                "type": "string",
                "description": "Who took it over: a person's full name (else username), or "
                "the API key.",
            }
        ),
    ]
    started_at: UtcTime
    expires_at: Annotated[
        UtcTime, Field(description="When it ends unless renewed (the latest token's exp).")
    ]
    joined_at: Annotated[
        UtcTime | None, Field(description="When the holder's participant joined the room.")
    ]
    ended_at: UtcTime | None
    ended_by: Annotated[
        str | None,
        WithJsonSchema(
            {
                "type": ["string", "null"],
                "enum": [*TakeoverEnd.values, None],
                "description": "How it ended; null while held.",
            }
        ),
    ]
    resumed_at: Annotated[
        UtcTime | None, Field(description="When the agent confirmed it had the call back.")
    ]
    resume_error: Annotated[
        str,
        WithJsonSchema(
            {
                "type": "string",
                "description": "Why the agent was not resumed (or, ended `not_paused`, why "
                "its pause was not confirmed); empty otherwise.",
            }
        ),
    ]


# --- what browsers get live (``events.py`` wraps these in its messages) -------------------


class LiveConversation(Shape):
    """What browsers get about a conversation (built once per event, not per socket)."""

    id: uuid.UUID
    status: Status
    status_display: str
    is_active: bool
    agent_label: str
    caller_label: str
    team: str | None  # the team's name
    started_at: UtcTime | None
    ended_at: UtcTime | None


# --- OpenAPI -----------------------------------------------------------------------------

ANSWERS: tuple[type[Shape], ...] = (
    ListenerToken,
    Conversation,
    ConversationPage,
    Transcript,
    TranscriptPushResult,
    Alert,
    AlertList,
    AlertRule,
    AlertRuleList,
    ListenerList,
    Guidance,
    GuidanceList,
    TakeoverToken,
    Takeover,
)


class _OpenApiSchema(GenerateJsonSchema):
    """pydantic's JSON Schema, OpenAPI 3.1 style: no generated titles, and a nullable
    scalar as ``"type": [..., "null"]`` (clients read that more easily than anyOf)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        inner = self.generate_inner(schema["schema"])
        if isinstance(inner.get("type"), str) and not {"enum", "$ref", "const"} & set(inner):
            return {**inner, "type": [inner["type"], "null"]}
        return super().nullable_schema(schema)


REF_TEMPLATE = "#/components/schemas/{model}"


def component_schemas(requests: Iterable[type[BaseModel]] = ()) -> dict[str, Any]:
    """``components.schemas``: the answers, the ``requests`` bodies and every shape
    they contain, by class name."""
    _, top = models_json_schema(
        [(shape, "serialization") for shape in ANSWERS]
        + [(body, "validation") for body in requests],
        ref_template=REF_TEMPLATE,
        schema_generator=_OpenApiSchema,
    )
    schemas: dict[str, Any] = top.get("$defs", {})
    for schema in schemas.values():
        schema.pop("title", None)
    return schemas
