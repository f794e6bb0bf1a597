"""The load tests' world, made inside a server's database (``manage.py shell``).

    world = seeded_world(env, keys=20)  # migrates, then runs print_world(20) in a shell

One organization with a team, a supervisor of that team signed in (a session
cookie for the portal's websocket), ``keys`` API keys with
``conversations:manage`` and one live call with a LiveKit room. One subprocess
instead of one ``manage.py`` run per key.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from anyreach_listen.access.credentials import issue_api_key
from anyreach_listen.access.roles import Role, Scope
from anyreach_listen.models import (
    Conversation,
    ConversationStatus,
    Membership,
    Organization,
    Team,
)
from tests.support.processes import run_manage

HOST = "127.0.0.1"


def build_world(keys: int) -> dict[str, Any]:
    slug = f"load-{uuid.uuid4().hex[:8]}"
    org = Organization.objects.create(name=f"Load {slug}", slug=slug)
    team = Team.objects.create(organization=org, name="Support")
    user = get_user_model().objects.create_user(username=f"{slug}-supervisor")
    Membership.objects.create(user=user, organization=org, role=Role.SUPERVISOR).teams.set([team])
    secrets = [issue_api_key(org, f"{slug}-{i}", [Scope.MANAGE])[1] for i in range(keys)]
    call = Conversation.objects.create(
        organization=org,
        team=team,
        status=ConversationStatus.IN_PROGRESS,
        livekit_room=f"{slug}-room",
        agent_label="Agent",
        caller_label="Caller",
    )
    client = Client(HTTP_HOST=HOST)
    client.force_login(user)
    return {
        "organization_id": str(org.pk),
        "conversation_id": str(call.pk),
        "room_name": call.livekit_room,
        "api_keys": secrets,
        "session_cookie": f"{settings.SESSION_COOKIE_NAME}="
        f"{client.cookies[settings.SESSION_COOKIE_NAME].value}",
    }


def print_world(keys: int) -> None:
    print(json.dumps(build_world(keys)))


def print_audit(conversation_id: str) -> None:
    """The call's listen sessions: identity and the API key's name, one JSON list."""
    from anyreach_listen.models import ListenSession

    rows = ListenSession.objects.filter(conversation_id=conversation_id).values_list(
        "listener_identity", "api_key__name"
    )
    print(json.dumps([list(row) for row in rows]))


def seeded_world(env: dict[str, str], keys: int) -> dict[str, Any]:
    """Migrate ``env``'s database and build the world in it (from the test process)."""
    run_manage(env, "migrate", "-v0")
    code = f"from tests.support.load import print_world; print_world({keys})"
    world: dict[str, Any] = json.loads(run_manage(env, "shell", "-c", code).splitlines()[-1])
    return world
