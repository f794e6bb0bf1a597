"""A supervisor's floor of live calls, and query counting: what the "a page costs the same
number of queries whatever the number of calls" tests of the portal share."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from anyreach_listen import alerts
from anyreach_listen.access.roles import Role
from anyreach_listen.models import (
    Conversation,
    ConversationStatus,
    Membership,
    Organization,
    Team,
)
from anyreach_listen.transcripts import SegmentIn, record
from tests.support.world import make_conversation


class Floor:
    """A supervisor of two teams and the live calls of those teams (with rooms)."""

    def __init__(self) -> None:
        self.org = Organization.objects.create(name="Floor", slug="floor")
        self.teams = [
            Team.objects.create(organization=self.org, name=name) for name in ("North", "South")
        ]
        self.user = User.objects.create_user("floor-supervisor")
        Membership.objects.create(
            user=self.user, organization=self.org, role=Role.SUPERVISOR
        ).teams.set(self.teams)
        self.calls = 0

    def add_live_calls(self, n: int) -> list[Conversation]:
        made = []
        for _ in range(n):
            self.calls += 1
            call = make_conversation(
                self.org,
                self.teams[self.calls % 2],
                ConversationStatus.IN_PROGRESS,
                f"floor-room-{self.calls}",
            )
            call.agent_label = f"Agent {self.calls % 3}"  # a few agents for the filter list
            call.save()
            made.append(call)
        return made


class TalkingFloor(Floor):
    """The floor, each call with two final lines, an interim one and a critical alert."""

    def __init__(self) -> None:
        super().__init__()
        alerts.create_rule(self.org, phrase="refund", severity="critical")

    def add_live_calls(self, n: int) -> list[Conversation]:
        made = super().add_live_calls(n)
        for number, call in enumerate(made, start=self.calls - n + 1):
            record(
                call,
                [
                    SegmentIn("a1", "agent", "Hello.", True),
                    SegmentIn("u1", "user", f"I want a refund, call {number}.", True),
                    SegmentIn("a2", "agent", "Sure", False),
                ],
            )
        return made


def queries(client: Client, url: str, **headers: str) -> tuple[list[str], str]:
    """The SQL of one GET of ``url`` (which must answer 200) and the page."""
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, headers=headers)
    assert response.status_code == 200
    return [q["sql"] for q in captured.captured_queries], response.content.decode()


def same_count(few: list[str], many: list[str]) -> None:
    assert len(few) == len(many), "\n".join(
        [f"{len(few)} queries with few calls:", *few, f"{len(many)} with many:", *many]
    )
