"""alerts.py: phrase matching as a table, which rules apply, once per rule per segment, and
the ``alert.raised`` message each new alert publishes after commit."""

from __future__ import annotations

from typing import Any

import pytest

from anyreach_listen import alerts
from anyreach_listen.events import ALERT_RAISED, organization_group
from anyreach_listen.models import Alert, AlertRule, Conversation
from anyreach_listen.transcripts import SegmentIn, record
from tests.support.world import World


@pytest.mark.parametrize(
    ("phrase", "text", "expected"),
    [
        ("charged twice", "I was charged twice for my order.", True),
        ("charged twice", "I WAS CHARGED TWICE!", True),  # case
        ("Charged Twice", "i was charged twice", True),
        ("charged twice", "charged, twice?", True),  # punctuation between the words
        ("charged twice", "I was charged—twice", True),  # a dash
        ("charged twice", "charged-twice", True),
        ("charged twice!", "we charged twice", True),  # punctuation in the phrase
        ("charged twice", "charged  \n twice", True),  # any whitespace
        ("charged twice", "overcharged twice", False),  # word boundary before
        ("charged twice", "charged twicefold", False),  # word boundary after
        ("charged twice", "charged you twice", False),  # the words in order, adjacent
        ("charged twice", "twice charged", False),
        ("refund", "Refund, please.", True),
        ("refund", "refunds", False),
        ("refund", "prefund", False),
        ("don't", "I dont know", True),  # apostrophes join a word
        ("dont", "I don't know", True),
        ("don't", "I don\u2019t know", True),  # typographic apostrophe
        ("cancel", "CANCEL_ACCOUNT", True),  # underscores separate words
        ("straße", "STRASSE", True),  # casefolded, not just lowered
        ("café", "Le café.", True),
        ("...", "...", False),  # a phrase without words matches nothing
        ("", "anything", False),
    ],
)
def test_matching_table(phrase: str, text: str, expected: bool) -> None:
    assert alerts.matches(phrase, text) is expected


def final(role: str, segment_id: str, text: str) -> SegmentIn:
    return SegmentIn(segment_id, role, text, True)


def rule(world: World, phrase: str, **fields: Any) -> AlertRule:
    return alerts.create_rule(fields.pop("organization", world.org), phrase=phrase, **fields)


def raised(conversation: Conversation) -> list[tuple[str, str]]:
    rows = Alert.objects.filter(conversation=conversation).select_related("rule", "segment")
    return sorted((a.rule.phrase, a.segment.segment_id) for a in rows)


@pytest.mark.parametrize(
    ("rule_role", "speaker", "expected"),
    [
        ("any", "agent", True),
        ("any", "user", True),
        ("user", "user", True),
        ("user", "agent", False),
        ("agent", "agent", True),
        ("agent", "user", False),
    ],
)
def test_role_filter(world: World, rule_role: str, speaker: str, expected: bool) -> None:
    call = world.conversations["in_progress"]
    rule(world, "charged twice", role=rule_role)
    record(call, [final(speaker, "s1", "You were charged twice.")])
    assert raised(call) == ([("charged twice", "s1")] if expected else [])


def test_team_and_organization_filter(world: World) -> None:
    support = world.conversations["in_progress"]  # team Support
    sales = world.conversations["other_team"]  # team Sales
    foreign = world.conversations["other_org"]
    rule(world, "refund", team=world.team)
    rule(world, "cancel")  # every team of Acme
    rule(world, "upgrade", organization=world.other_org)
    for call in (support, sales, foreign):
        record(call, [final("user", "u1", "Refund or cancel, or upgrade?")])
    assert raised(support) == [("cancel", "u1"), ("refund", "u1")]
    assert raised(sales) == [("cancel", "u1")]
    assert raised(foreign) == [("upgrade", "u1")]


def test_only_final_segments_raise_alerts_and_each_once_per_rule(world: World) -> None:
    call = world.conversations["in_progress"]
    rule(world, "charged twice")
    rule(world, "twice", severity="critical")
    record(call, [SegmentIn("u1", "user", "I was charged twice", False)])
    assert raised(call) == []  # interim: the text may still change
    first = record(call, [final("user", "u1", "I was charged twice.")])
    assert len(first.alerts) == 2
    again = record(call, [final("user", "u1", "I was charged twice.")])  # a retry
    assert again.alerts == []
    assert raised(call) == [("charged twice", "u1"), ("twice", "u1")]
    # The same phrase in another segment is another alert.
    record(call, [final("agent", "a2", "Sorry you were charged twice.")])
    assert raised(call) == [
        ("charged twice", "a2"),
        ("charged twice", "u1"),
        ("twice", "a2"),
        ("twice", "u1"),
    ]


def test_a_deleted_rule_stops_matching_and_keeps_its_alerts(world: World) -> None:
    call = world.conversations["in_progress"]
    refund = rule(world, "refund")
    record(call, [final("user", "u1", "A refund please.")])
    alerts.delete_rule(refund)
    record(call, [final("user", "u2", "A refund, now.")])
    assert raised(call) == [("refund", "u1")]


def test_rules_apply_from_their_creation_on(world: World) -> None:
    call = world.conversations["in_progress"]
    record(call, [final("user", "u1", "A refund please.")])
    rule(world, "refund")
    record(call, [final("user", "u1", "A refund please.")])  # the same final again
    assert raised(call) == []


def test_each_segment_is_normalised_once_whatever_the_number_of_rules(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Matching runs under the call's row lock: a segment's text is normalised once, not
    once per rule, and each phrase once per batch, not once per segment."""
    call = world.conversations["in_progress"]
    for phrase in ("charged twice", "refund", "cancel my account", "manager", "twice"):
        rule(world, phrase)
    # A phrase without words, stored past create_rule (the admin site), matches nothing.
    AlertRule.objects.create(organization=world.org, phrase="?!")
    texts = ["I was charged twice.", "I want a refund!", "Hello there."]
    seen: list[str] = []
    real = alerts.normalize

    def counted(text: str) -> str:
        seen.append(text)
        return real(text)

    monkeypatch.setattr(alerts, "normalize", counted)
    record(call, [final("user", f"u{n}", text) for n, text in enumerate(texts)])
    assert sorted(t for t in seen if t in texts) == sorted(texts)  # once each
    assert len(seen) == len(texts) + 6  # and each of the six phrases once
    assert raised(call) == [("charged twice", "u0"), ("refund", "u1"), ("twice", "u0")]


def test_create_rule_refuses_a_phrase_without_words_and_a_foreign_team(world: World) -> None:
    with pytest.raises(ValueError):
        rule(world, "?!")
    foreign_team = world.other_org.teams.create(name="Ops")
    with pytest.raises(ValueError):
        rule(world, "refund", team=foreign_team)


def test_each_new_alert_publishes_one_message_without_segment_text_after_commit(
    world: World, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, dict[str, Any]]] = []

    class Layer:
        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            sent.append((group, message))

    monkeypatch.setattr("anyreach_listen.events.get_channel_layer", lambda: Layer())
    call = world.conversations["in_progress"]
    charged = rule(world, "charged twice")
    text = "Hi, I was charged twice for my order last week."
    with django_capture_on_commit_callbacks(execute=True):
        record(call, [final("user", "u1", text)])
        assert sent == []  # nothing before the commit
    with django_capture_on_commit_callbacks(execute=True):
        record(call, [final("user", "u1", text)])  # no new alert, no message

    alerts_sent = [(g, m) for g, m in sent if m["type"] == ALERT_RAISED]
    assert len(alerts_sent) == 1
    group, message = alerts_sent[0]
    assert group == organization_group(world.org.pk)
    assert message["conversation_id"] == str(call.pk)
    assert message["team_id"] == str(world.team.pk)
    assert message["alert"]["phrase"] == "charged twice"
    assert message["alert"]["rule_id"] == str(charged.pk)
    assert message["alert"]["severity"] == "warning"
    assert message["alert"]["segment_id"] == "u1"
    assert "order last week" not in repr(message)
