"""A stand-in for ``guidance.give`` for the portal's tests (``tests/portal/test_assist.py``,
``tests/browser/test_portal_assist.py``): it records each call, then delivers the
guidance (a delivered row, 42 ms) or raises ``refusal``. The real path (LiveKit, the
agent) is tests/e2e's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from anyreach_listen.api.errors import ApiError
from anyreach_listen.models import Conversation, Guidance, GuidanceStatus


@dataclass(frozen=True)
class Call:
    """One call of the stand-in: what the view passed."""

    conversation: Conversation
    mode: str
    text: str
    audit: dict[str, Any]
    request: HttpRequest | None


class Given:
    """``guidance.give``'s stand-in (install it with ``monkeypatch.setattr``)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.refusal: ApiError | None = None  # raised instead of delivering, when set

    @property
    def sent(self) -> list[tuple[str, str]]:
        """(mode, text) of each call, in order."""
        return [(call.mode, call.text) for call in self.calls]

    def __call__(
        self,
        conversation: Conversation,
        *,
        mode: str,
        text: str,
        audit: Mapping[str, Any],
        request: HttpRequest | None = None,
    ) -> Guidance:
        self.calls.append(Call(conversation, mode, text, dict(audit), request))
        if self.refusal is not None:
            raise self.refusal
        return Guidance.objects.create(
            conversation=conversation,
            user=audit["user"],
            mode=mode,
            text=text,
            status=GuidanceStatus.DELIVERED,
            delivered_at=timezone.now(),
            latency_ms=42,
        )
