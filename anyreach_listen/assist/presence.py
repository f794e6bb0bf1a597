"""Who is listening to a call now: its listen sessions in the room (joined, not left, not
revoked, the call live: ``ListenSession.objects.live()``), as the LiveKit webhooks keep
them (``listening/sessions.py``), in join order; how pages name them.
"""

from __future__ import annotations

from anyreach_listen.models import Conversation, ListenSession


def listeners_now(conversation: Conversation) -> list[ListenSession]:
    """The call's listeners in its room now, first to join first (who loaded for names)."""
    rows = ListenSession.objects.live().filter(conversation=conversation, joined_at__isnull=False)
    return list(rows.select_related("user").order_by("joined_at", "id"))


def display_name(session: ListenSession) -> str:
    """A listener as pages name them: an API session by its credential's words, a
    person by their full name, else their username."""
    return session.display_name
