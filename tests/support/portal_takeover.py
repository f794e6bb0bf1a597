"""A stand-in for ``assist.takeover``'s ``take_over`` and ``hand_back`` for the portal's tests
(``tests/portal/test_takeover.py``, ``tests/browser/test_portal_takeover.py``): no agent to
pause, but real rows (one held per call) and a real takeover token (``takeover_grants``,
signed with the app's LiveKit credentials), so a browser can join a real LiveKit with it.
The real path (the pause, the resume, the participant removed) is tests/e2e's.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from django.http import HttpRequest
from django.utils import timezone
from livekit.api import AccessToken

from anyreach_listen.api.errors import ApiError, Errors
from anyreach_listen.assist import takeover
from anyreach_listen.conf import listen_settings
from anyreach_listen.models import Conversation, Takeover, TakeoverEnd


@dataclass(frozen=True)
class Call:
    """One call of the stand-in: what the view passed."""

    what: str  # "start", "renew" or "hand_back"
    conversation: Conversation
    audit: dict[str, Any]


class TakeOver:
    """``take_over`` and ``hand_back``'s stand-ins; ``install`` puts them in place."""

    def __init__(self, ttl: dt.timedelta = dt.timedelta(minutes=5)) -> None:
        self.ttl = ttl  # the grants' life: a test of renewals makes it short
        self.calls: list[Call] = []
        self.refusal: ApiError | None = None  # raised by take_over instead, when set

    def install(self, monkeypatch: pytest.MonkeyPatch) -> TakeOver:
        monkeypatch.setattr(takeover, "take_over", self.take_over)
        monkeypatch.setattr(takeover, "hand_back", self.hand_back)
        return self

    @property
    def done(self) -> list[str]:
        return [call.what for call in self.calls]

    def _grant(self, row: Takeover, renewed: bool) -> takeover.TakeoverGrant:
        room = str(row.conversation.livekit_room)
        row.expires_at = timezone.now() + self.ttl
        row.save(update_fields=["expires_at"])
        token = (
            AccessToken(listen_settings.LIVEKIT_API_KEY, listen_settings.LIVEKIT_API_SECRET)
            .with_identity(row.identity)
            .with_name(row.display_name)
            .with_ttl(self.ttl)
            .with_grants(takeover.takeover_grants(room))
            .with_metadata(json.dumps({"takeover": True}))
            .to_jwt()
        )
        return takeover.TakeoverGrant(
            takeover=row,
            url=listen_settings.LIVEKIT_URL,
            token=token,
            room_name=room,
            expires_at=row.expires_at,
            renewed=renewed,
        )

    def take_over(
        self,
        conversation: Conversation,
        *,
        audit: Mapping[str, Any],
        request: HttpRequest | None = None,
        renewing: uuid.UUID | None = None,
    ) -> takeover.TakeoverGrant:
        if self.refusal is not None:
            self.calls.append(Call("refused", conversation, dict(audit)))
            raise self.refusal
        held = takeover.held(conversation)
        if renewing is not None and (held is None or held.pk != renewing):
            self.calls.append(Call("renew_ended", conversation, dict(audit)))
            raise ApiError(Errors.TAKEOVER_NOT_FOUND, "That takeover has ended.")
        if held is not None:
            if held.user_id != audit["user"].pk:
                raise ApiError(Errors.ALREADY_TAKEN_OVER, f"Taken over by {held.display_name}.")
            self.calls.append(Call("renew", conversation, dict(audit)))
            return self._grant(held, renewed=True)
        self.calls.append(Call("start", conversation, dict(audit)))
        pk = uuid.uuid4()
        row = Takeover.objects.create(
            id=pk,
            conversation=conversation,
            user=audit["user"],
            identity=f"{takeover.IDENTITY_PREFIX}{pk}",
            agent_identity="agent-ava",
            paused_at=timezone.now(),
            expires_at=timezone.now() + self.ttl,
        )
        return self._grant(row, renewed=False)

    def hand_back(
        self,
        conversation: Conversation,
        *,
        how: str = TakeoverEnd.HANDED_BACK,
        takeover_id: uuid.UUID | None = None,
    ) -> Takeover:
        row = takeover.held(conversation)
        if row is None or (takeover_id is not None and row.pk != takeover_id):
            raise ApiError(Errors.TAKEOVER_NOT_FOUND)
        self.calls.append(Call("hand_back", conversation, {"user": row.user}))
        row.ended_at, row.ended_by = timezone.now(), how
        row.save(update_fields=["ended_at", "ended_by"])
        return row
