"""Alert rules on the org admin's Organization page (``portal/organization.py``)."""

from __future__ import annotations

from typing import Any

from django.test import Client

from anyreach_listen import alerts, transcripts
from anyreach_listen.models import Alert, AlertRule
from anyreach_listen.transcripts import SegmentIn
from tests.support.world import TEST_LISTEN_SETTINGS, World, login


def rules_url(world: World) -> str:
    return f"/organization/{world.org.pk}/alert-rules/"


def test_an_org_admin_adds_a_rule_that_then_raises_alerts(client: Client, world: World) -> None:
    login(client, "admin")
    response = client.post(
        rules_url(world),
        {
            "phrase": "  Cancel my account ",
            "role": "user",
            "severity": "critical",
            "team": str(world.team.pk),
        },
    )
    assert response.status_code == 302
    rule = AlertRule.objects.get(organization=world.org)
    assert (rule.phrase, rule.role, rule.severity, rule.team) == (
        "Cancel my account",
        "user",
        "critical",
        world.team,
    )
    assert rule.created_by == world.users["admin"] and rule.created_by_label == "admin"
    page = client.get(f"/organization/{world.org.pk}/").content.decode()
    assert "“Cancel my account”" in page and "Critical" in page
    call = world.conversations["in_progress"]
    transcripts.record(call, [SegmentIn("u1", "user", "Please, cancel my account!", True)])
    assert Alert.objects.get(conversation=call).rule == rule


def test_a_phrase_without_words_or_a_foreign_team_is_refused(client: Client, world: World) -> None:
    from anyreach_listen.models import Team

    foreign = Team.objects.create(organization=world.other_org, name="Theirs")
    login(client, "admin")
    response = client.post(rules_url(world), {"phrase": "?!", "role": "any", "severity": "info"})
    assert "An alert phrase needs at least one word." in response.content.decode()
    response = client.post(
        rules_url(world),
        {"phrase": "refund", "role": "any", "severity": "info", "team": str(foreign.pk)},
    )
    assert response.status_code == 200 and 'role="alert"' in response.content.decode()
    assert not AlertRule.objects.exists()


def test_deleting_a_rule_stops_it_and_keeps_its_alerts(client: Client, world: World) -> None:
    rule = alerts.create_rule(world.org, phrase="charged twice")
    call = world.conversations["in_progress"]
    transcripts.record(call, [SegmentIn("u1", "user", "I was charged twice", True)])
    login(client, "admin")
    response = client.post(f"/organization/{world.org.pk}/alert-rules/{rule.pk}/delete/")
    assert response.status_code == 302
    rule.refresh_from_db()
    assert rule.deleted_at is not None
    assert Alert.objects.filter(rule=rule).count() == 1  # the alert still names its phrase
    assert "No alert rules yet." in client.get(f"/organization/{world.org.pk}/").content.decode()
    transcripts.record(call, [SegmentIn("u2", "user", "charged twice again", True)])
    assert Alert.objects.filter(rule=rule).count() == 1


def test_only_the_organizations_admins_manage_its_rules(client: Client, world: World) -> None:
    rule = alerts.create_rule(world.org, phrase="charged twice")
    delete = f"/organization/{world.org.pk}/alert-rules/{rule.pk}/delete/"
    new = {"phrase": "refund", "role": "any", "severity": "info"}
    for who in ("supervisor", "qa", "viewer"):
        member = login(Client(), who)
        assert member.post(rules_url(world), new).status_code == 404
        assert member.post(delete).status_code == 404
    outsider = Client()
    assert outsider.login(username="outsider", password="pw")  # admin of Other only
    assert outsider.post(rules_url(world), new).status_code == 404
    assert outsider.post(delete).status_code == 404
    # Nor through the URL of the organization they administer.
    theirs = f"/organization/{world.other_org.pk}/alert-rules/{rule.pk}/delete/"
    assert outsider.post(theirs).status_code == 404
    assert login(client, "admin").get(delete).status_code == 405  # POST only
    rule.refresh_from_db()
    assert rule.deleted_at is None
    assert list(AlertRule.objects.values_list("phrase", flat=True)) == ["charged twice"]


def test_the_rule_cap_holds_on_the_organization_page(
    client: Client, world: World, settings: Any
) -> None:
    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, "MAX_ALERT_RULES": 1}
    alerts.create_rule(world.org, phrase="charged twice")
    login(client, "admin")
    response = client.post(
        rules_url(world), {"phrase": "refund", "role": "any", "severity": "info"}
    )
    assert response.status_code == 200
    assert "at most 1 active alert rules" in response.content.decode()
    assert list(AlertRule.objects.values_list("phrase", flat=True)) == ["charged twice"]
