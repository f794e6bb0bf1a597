"""Create (idempotently) the demo organization, its people, keys and conversations."""

import json
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from anyreach_listen import alerts
from anyreach_listen.access.credentials import issue_api_key, issue_pat, rotate
from anyreach_listen.access.roles import Role, Scope
from anyreach_listen.models import (
    AlertRule,
    AlertSeverity,
    ApiKey,
    Conversation,
    ConversationStatus,
    Membership,
    Organization,
    PersonalAccessToken,
    Team,
)

DEMO_SLUG = "demo"
DEMO_TEAM = "Support"
DEMO_ALERT_PHRASE = "charged twice"
# name -> scopes of the three demo API keys
DEMO_KEYS: dict[str, list[str]] = {
    "read_sensitive": [Scope.READ_SENSITIVE],
    "manage": [Scope.MANAGE],
    "no_scope": [],
}
DEMO_CONVERSATIONS: dict[str, dict[str, Any]] = {
    "active": {
        "status": ConversationStatus.IN_PROGRESS,
        "livekit_room": "demo-seeded-call",
        "caller_label": "+1 555 0100 (seeded)",
    },
    "no_room": {
        "status": ConversationStatus.IN_PROGRESS,
        "livekit_room": None,
        "caller_label": "+1 555 0101 (no room yet)",
    },
    "completed": {
        "status": ConversationStatus.COMPLETED,
        "livekit_room": "demo-finished-call",
        "caller_label": "+1 555 0102 (finished)",
    },
}


class Command(BaseCommand):
    help = (
        "Create the demo organization with a team, one user per role, three API keys, a PAT "
        "and three conversations. Safe to run again: the same rows are reused and fresh "
        "secrets and passwords are printed (old ones stop working)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json",
            dest="as_json",
            action="store_true",
            help="Print exactly one JSON object on stdout.",
        )

    @transaction.atomic
    def handle(self, *args: Any, as_json: bool, **options: Any) -> None:
        result = seed()
        if as_json:
            self.stdout.write(json.dumps(result))
            return
        self.stdout.write(f"Organization {result['organization_id']} (slug {DEMO_SLUG!r})")
        for role, login in result["users"].items():
            self.stdout.write(f"  {role:<11} {login['username']} / {login['password']}")
        for name, secret in result["api_keys"].items():
            self.stdout.write(f"  API key {name:<15} {secret}")
        self.stdout.write(f"  PAT (supervisor)        {result['pat']}")
        for name, conversation_id in result["conversations"].items():
            self.stdout.write(f"  conversation {name:<10} {conversation_id}")


def seed() -> dict[str, Any]:
    org, _ = Organization.objects.get_or_create(slug=DEMO_SLUG, defaults={"name": "Demo Inc."})
    team, _ = Team.objects.get_or_create(organization=org, name=DEMO_TEAM)
    users: dict[str, dict[str, str]] = {}
    user_model = get_user_model()
    for role in Role:
        username = f"demo-{role.value}"
        user, _ = user_model.objects.get_or_create(
            username=username, defaults={"email": f"{username}@example.com"}
        )
        password = secrets.token_urlsafe(12)
        user.set_password(password)
        # The demo admin may also use Django's admin site.
        user.is_staff = user.is_superuser = role == Role.ADMIN
        user.save()
        membership, _ = Membership.objects.update_or_create(
            user=user, organization=org, defaults={"role": role}
        )
        membership.teams.set([team])
        users[role.value] = {"username": username, "password": password}

    api_keys: dict[str, str] = {}
    for name, scopes in DEMO_KEYS.items():
        key = ApiKey.objects.filter(organization=org, name=f"demo-{name}").first()
        if key is None:
            _, secret = issue_api_key(org, f"demo-{name}", scopes)
        else:
            key.scopes, key.revoked_at, key.expires_at = scopes, None, None
            secret = rotate(key)
        api_keys[name] = secret

    supervisor = user_model.objects.get(username=users["supervisor"]["username"])
    pat_scopes = [Scope.READ, Scope.READ_SENSITIVE]
    pat = PersonalAccessToken.objects.filter(user=supervisor, name="demo").first()
    if pat is None:
        _, pat_secret = issue_pat(supervisor, "demo", pat_scopes)
    else:
        pat.scopes, pat.revoked_at, pat.expires_at = pat_scopes, None, None
        pat_secret = rotate(pat)

    conversations: dict[str, str] = {}
    now = timezone.now()
    for name, fields in DEMO_CONVERSATIONS.items():
        finished = fields["status"] == ConversationStatus.COMPLETED
        values = {
            **fields,
            "team": team,
            "agent_label": "Ava (AI agent)",
            "started_at": now,
            "ended_at": now if finished else None,
            # Back to the seed's own: the webhooks and the sweep add keys (the room's sid,
            # ended_by), and the seeded call may have ended meanwhile.
            "metadata": {"seed": name},
            "room_missing_since": None,
        }
        conversation = (
            Conversation.objects.filter(organization=org, metadata__seed=name)
            .order_by("-created_at")
            .first()
        )
        if conversation is None:
            conversation = Conversation.objects.create(organization=org, **values)
        else:
            for field, value in values.items():
                setattr(conversation, field, value)
            conversation.save()
        conversations[name] = str(conversation.pk)

    # The first simulated caller says it: a newcomer sees a live alert at once.
    if not AlertRule.objects.live().filter(organization=org, phrase=DEMO_ALERT_PHRASE).exists():
        alerts.create_rule(
            org,
            phrase=DEMO_ALERT_PHRASE,
            severity=AlertSeverity.WARNING,
            created_by_label="seed_demo",
        )

    return {
        "organization_id": str(org.pk),
        "team_id": str(team.pk),
        "users": users,
        "api_keys": api_keys,
        "pat": pat_secret,
        "conversations": conversations,
    }
