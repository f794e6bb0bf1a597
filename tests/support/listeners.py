"""Listen sessions to revoke, and a fake LiveKit RoomService that records removals."""

from __future__ import annotations

from typing import Any

import pytest

from anyreach_listen.listening import revocation
from anyreach_listen.listening.minting import grant_listen
from anyreach_listen.models import (
    ApiKey,
    Conversation,
    ConversationStatus,
    ListenSession,
    ListenVia,
)
from tests.support.world import World


def fake_remove_listeners(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Replace LiveKit's removal of listeners; returns the (room, identity) pairs it gets."""
    calls: list[tuple[str, str]] = []

    async def fake_remove(targets: Any) -> dict[str, bool]:
        calls.extend(targets)
        return {identity: True for _, identity in targets}

    monkeypatch.setattr(revocation, "remove_listeners", fake_remove)
    return calls


def mint_session(
    world: World, status: str = ConversationStatus.IN_PROGRESS, **who: Any
) -> ListenSession:
    """A session on the world's conversation in ``status``, minted while it was live."""
    conversation = world.conversations[status]
    Conversation.objects.filter(pk=conversation.pk).update(status=ConversationStatus.IN_PROGRESS)
    conversation.status = ConversationStatus.IN_PROGRESS
    session = grant_listen(conversation, via=ListenVia.API, audit=who).listen_session
    Conversation.objects.filter(pk=conversation.pk).update(status=status)
    conversation.status = status
    return session


def world_api_key(world: World, name: str = "rs") -> ApiKey:
    return ApiKey.objects.get(organization=world.org, name=name)
