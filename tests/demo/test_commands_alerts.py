"""seed_demo's alert rule: "charged twice" (warning), once however often it runs, and the
simulated call's script raises it."""

from __future__ import annotations

import pytest

from anyreach_listen.models import AlertRule, Conversation
from anyreach_listen.transcripts import SegmentIn, record
from demo.call_simulator import DEFAULT_SCRIPT
from tests.support.commands import run


@pytest.mark.django_db
def test_seed_demo_seeds_one_charged_twice_rule_that_the_demo_call_raises() -> None:
    run("seed_demo", "--json")
    run("seed_demo", "--json")
    (rule,) = AlertRule.objects.live()
    assert (rule.phrase, rule.severity, rule.role, rule.team) == (
        "charged twice",
        "warning",
        "any",
        None,
    )
    call = Conversation.objects.get(organization=rule.organization, metadata={"seed": "active"})
    turns = [
        SegmentIn(f"turn-{n}", turn.role, turn.text, True) for n, turn in enumerate(DEFAULT_SCRIPT)
    ]
    result = record(call, turns)
    assert [(a.rule_id, a.segment.segment_id) for a in result.alerts] == [(rule.pk, "turn-1")]
