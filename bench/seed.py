"""Benchmark data in the database the environment names; prints one JSON object.

    DJANGO_SETTINGS_MODULE=bench.settings DATABASE_URL=... python bench/seed.py [--live N]
        [--query-counts]

An organization with a signed-in supervisor, a listening API key and live calls, written
by a process of its own (``support.seed``) into the database the benchmark's servers are
then started on; what it makes and prints: bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import string
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from anyreach_listen.access.credentials import issue_api_key  # noqa: E402
from anyreach_listen.access.roles import Role, Scope  # noqa: E402
from anyreach_listen.models import (  # noqa: E402
    Conversation,
    ConversationStatus,
    Membership,
    Organization,
    Team,
)

HOST = "127.0.0.1"


def make_org(slug: str, live: int) -> dict[str, Any]:
    """An organization with a team, its supervisor, an API key and ``live`` live calls."""
    org = Organization.objects.create(name=f"Bench {slug}", slug=slug)
    team = Team.objects.create(organization=org, name="Support")
    user = get_user_model().objects.create_user(username=f"{slug}-supervisor")
    Membership.objects.create(user=user, organization=org, role=Role.SUPERVISOR).teams.set([team])
    _, api_key = issue_api_key(org, f"{slug}-key", [Scope.READ_SENSITIVE])
    now = timezone.now()
    calls = Conversation.objects.bulk_create(
        Conversation(
            organization=org,
            team=team,
            status=ConversationStatus.IN_PROGRESS,
            livekit_room=f"{slug}-room-{i}",
            agent_label=f"Agent {i % 7}",
            caller_label=f"+1 555 {i:04d}",
            started_at=now - dt.timedelta(seconds=i),
        )
        for i in range(live)
    )
    return {
        "slug": slug,
        "organization_id": str(org.pk),
        "user_id": user.pk,
        "username": user.username,
        "api_key": api_key,
        "conversations": [str(c.pk) for c in calls],
    }


def signed_in(user_id: int) -> tuple[Client, str, str]:
    """A test client signed in as the user, its session cookie and a CSRF token for it."""
    client = Client(HTTP_HOST=HOST, enforce_csrf_checks=True)
    client.force_login(get_user_model().objects.get(pk=user_id))
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    csrf = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
    client.cookies[settings.CSRF_COOKIE_NAME] = csrf
    return client, session, csrf


def count_queries(client: Client, url: str, **headers: str) -> int:
    """Queries of the second of two identical POSTs (the first warms per-minute writes)."""
    for attempt in range(2):
        with CaptureQueriesContext(connection) as captured:
            response = client.post(url, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"POST {url}: {response.status_code} {response.content[:300]!r}")
        if attempt == 1:
            return len(captured.captured_queries)
    raise AssertionError("unreachable")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slug", default="bench")
    parser.add_argument("--live", type=int, default=1)
    parser.add_argument("--query-counts", action="store_true")
    args = parser.parse_args()
    world = make_org(args.slug, args.live)
    client, session, csrf = signed_in(world["user_id"])
    world.update(session_cookie=session, csrf_token=csrf)
    world["cookie_names"] = {
        "session": settings.SESSION_COOKIE_NAME,
        "csrf": settings.CSRF_COOKIE_NAME,
    }
    if args.query_counts:
        conversation = world["conversations"][0]
        world["queries"] = {
            "api": count_queries(
                Client(HTTP_HOST=HOST),
                f"/core/conversations/{conversation}/listener-token",
                Authorization=f"Bearer {world['api_key']}",
            ),
            "portal": count_queries(
                client, f"/listen/conversations/{conversation}/token", **{"X-CSRFToken": csrf}
            ),
        }
    print(json.dumps(world))


if __name__ == "__main__":
    main()
