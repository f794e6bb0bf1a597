"""The literal URLs the tests call, where several test modules need one."""

from __future__ import annotations


def user_token_url(conversation_id: object) -> str:
    """The per-user token view (``anyreach_listen.listening.user_tokens.listen_token``)."""
    return f"/listen/conversations/{conversation_id}/token"
