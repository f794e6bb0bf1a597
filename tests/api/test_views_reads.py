"""api/views.py, metered reads: a transcript, a call's alerts and the alert rules come in pages
(``limit`` 1 to 500, default 200, ``cursor``, ``next``); those reads are rate-limited per
credential on their own limit; a transcript page or alert list is an audited read, once an
hour per credential, client address and call; an organization has at most
``MAX_ALERT_RULES`` active rules."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from django.test import Client

from anyreach_listen import alerts, disclosure
from anyreach_listen.models import AlertRule, Conversation, TranscriptRead
from anyreach_listen.transcripts import SegmentIn, record
from tests.api.test_views_transcripts import RULES, assert_error, transcript_of, validate
from tests.support.api import call as send
from tests.support.world import TEST_LISTEN_SETTINGS, World


def alerts_of(conversation: Conversation) -> str:
    return f"/core/conversations/{conversation.pk}/alerts"


def say(conversation: Conversation, count: int, *, start: int = 0) -> list[str]:
    """``count`` final segments, speakers taking turns; their ids in spoken order."""
    ids = [f"s{n}" for n in range(start, start + count)]
    updates = [
        SegmentIn(i, "agent" if n % 2 else "user", f"Line {i}.", True) for n, i in enumerate(ids)
    ]
    record(conversation, updates)
    return ids


def walk(client: Client, path: str, secret: str, key: str) -> list[list[Any]]:
    """Every page from ``path`` on, following ``next``: the items of each page."""
    pages: list[list[Any]] = []
    url: str | None = path
    while url is not None:
        response = send(client, "get", url, secret)
        assert response.status_code == 200, response.content
        assert response["Cache-Control"] == "no-store"
        pages.append(response.json()[key])
        url = response.json()["next"]
        assert len(pages) < 50, "next never became null"
    return pages


# --- pages ----------------------------------------------------------------------------------


def test_a_cursor_walk_returns_every_segment_once_in_spoken_order(
    client: Client, world: World
) -> None:
    call = world.conversations["in_progress"]
    spoken = say(call, 7)
    record(call, [SegmentIn("u-live", "user", "I was", False)])  # an interim, last
    record(call, [SegmentIn("u-live", "user", "I was charged", False)])  # its latest text
    secret = world.secrets["ak_read_sensitive"]

    first = send(client, "get", f"{transcript_of(call)}?limit=3", secret)
    validate("Transcript", first.json())
    assert first.json()["complete"] is False
    assert [s["id"] for s in first.json()["segments"]] == spoken[:3]
    # A segment said while the client pages lands on a later page, none twice.
    spoken += say(call, 1, start=7)
    pages = walk(client, first.json()["next"], secret, "segments")
    assert [len(p) for p in pages] == [3, 3]
    rest = [s for page in pages for s in page]
    assert [s["id"] for s in first.json()["segments"] + rest] == [
        *spoken[:7],
        "u-live",
        spoken[7],
    ]
    # The interim segment shows its latest text, wherever its page is.
    assert [s["text"] for s in rest if s["id"] == "u-live"] == ["I was charged"]
    # The cursor keeps the request's other parameters.
    assert "limit=3" in first.json()["next"]


def test_a_transcript_page_holds_200_segments_by_default_and_500_at_most(
    client: Client, world: World
) -> None:
    call = world.conversations["in_progress"]
    say(call, 200)
    say(call, 1, start=200)
    secret = world.secrets["ak_manage"]
    default = send(client, "get", transcript_of(call), secret).json()
    assert len(default["segments"]) == 200 and default["next"] is not None
    last = send(client, "get", default["next"], secret).json()
    assert [s["id"] for s in last["segments"]] == ["s200"] and last["next"] is None
    widest = send(client, "get", f"{transcript_of(call)}?limit=500", secret).json()
    assert len(widest["segments"]) == 201 and widest["next"] is None


def test_alerts_and_rules_come_in_pages_oldest_first(client: Client, world: World) -> None:
    call = world.conversations["in_progress"]
    phrases = [f"word{n}" for n in range(5)]
    made = [alerts.create_rule(world.org, phrase=p) for p in phrases]
    alerts.create_rule(world.other_org, phrase="not yours")
    alerts.delete_rule(alerts.create_rule(world.org, phrase="deleted"))
    # One segment raising five alerts, all at the same moment: the id breaks the tie.
    record(call, [SegmentIn("u1", "user", " ".join(phrases), True)])
    secret = world.secrets["ak_manage"]

    alert_pages = walk(client, f"{alerts_of(call)}?limit=2", secret, "alerts")
    assert [len(p) for p in alert_pages] == [2, 2, 1]
    listed = [a for page in alert_pages for a in page]
    assert sorted(a["phrase"] for a in listed) == phrases
    assert len({a["id"] for a in listed}) == 5
    validate("AlertList", {"alerts": listed, "next": None})

    rule_pages = walk(client, f"{RULES}?limit=2", secret, "rules")
    assert [len(p) for p in rule_pages] == [2, 2, 1]
    assert [r["id"] for page in rule_pages for r in page] == [str(r.pk) for r in made]
    validate("AlertRuleList", {"rules": rule_pages[0], "next": None})


def _position_cursor(position: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps([position]).encode()).decode()


BAD_PAGES = [
    "limit=0",
    "limit=501",
    "limit=-1",
    "limit=abc",
    "limit=%C2%B2",  # "²".isdigit()
    "cursor=zzz",
    "cursor=" + _position_cursor(True),
    "cursor=" + _position_cursor(-1),
    "cursor=" + _position_cursor(2**63),
    "cursor=" + base64.urlsafe_b64encode(b'["2026-01-01T00:00:00Z"]').decode(),
]


@pytest.mark.parametrize("query", BAD_PAGES)
@pytest.mark.parametrize("what", ["transcript", "alerts", "rules"])
def test_a_limit_out_of_range_or_a_cursor_not_given_out_is_invalid_field(
    client: Client, world: World, what: str, query: str
) -> None:
    call = world.conversations["in_progress"]
    path = {"transcript": transcript_of(call), "alerts": alerts_of(call), "rules": RULES}[what]
    response = send(client, "get", f"{path}?{query}", world.secrets["ak_manage"])
    assert_error(response, 400, "invalid_field")
    assert ("limit" if query.startswith("limit") else "cursor") in response.json()["error"][
        "message"
    ]
    assert not TranscriptRead.objects.exists()  # refused before anything was disclosed


@pytest.mark.parametrize("what", ["transcript", "alerts", "rules"])
def test_a_query_parameter_other_than_limit_and_cursor_is_unknown_field(
    client: Client, world: World, what: str
) -> None:
    call = world.conversations["in_progress"]
    path = {"transcript": transcript_of(call), "alerts": alerts_of(call), "rules": RULES}[what]
    response = send(client, "get", f"{path}?limt=5", world.secrets["ak_manage"])
    assert_error(response, 400, "unknown_field")
    assert "limt" in response.json()["error"]["message"]


def test_a_cursor_of_one_list_is_refused_by_the_other(client: Client, world: World) -> None:
    call = world.conversations["in_progress"]
    say(call, 3)
    for number in range(3):
        alerts.create_rule(world.org, phrase=f"rule {number}")
    secret = world.secrets["ak_manage"]
    transcript_next = send(client, "get", f"{transcript_of(call)}?limit=1", secret).json()["next"]
    rules_next = send(client, "get", f"{RULES}?limit=1", secret).json()["next"]
    transcript_cursor = transcript_next.split("cursor=")[1]
    rules_cursor = rules_next.split("cursor=")[1]
    assert_error(
        send(client, "get", f"{RULES}?cursor={transcript_cursor}", secret), 400, "invalid_field"
    )
    assert_error(
        send(client, "get", f"{transcript_of(call)}?cursor={rules_cursor}", secret),
        400,
        "invalid_field",
    )


# --- the read rate limit --------------------------------------------------------------------


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mid-window, so that no fixed window ends during the test."""
    monkeypatch.setattr(time, "time", lambda: 1_800_000_030.0)


def test_reads_have_their_own_limit_per_credential(
    client: Client, world: World, settings: Any, frozen_clock: None
) -> None:
    settings.ANYREACH_LISTEN = {
        **TEST_LISTEN_SETTINGS,
        "READ_RATE_LIMIT_REQUESTS": 3,
        "READ_RATE_LIMIT_WINDOW": 60,
        "RATE_LIMIT_REQUESTS": 2,
    }
    call = world.conversations["in_progress"]
    secret = world.secrets["ak_manage"]
    for path in (transcript_of(call), alerts_of(call), RULES):
        assert send(client, "get", path, secret).status_code == 200
    for path in (transcript_of(call), alerts_of(call), RULES):
        limited = send(client, "get", path, secret)
        assert_error(limited, 429, "rate_limited")
        assert limited["Retry-After"] == "30"
    # Reads used none of the credential's minting and write limit (2 here) …
    token = send(client, "post", f"/core/conversations/{call.pk}/listener-token", secret)
    assert token.status_code == 200, token.content
    assert send(client, "post", RULES, secret, {"phrase": "refund"}).status_code == 201
    assert_error(send(client, "post", RULES, secret, {"phrase": "cancel"}), 429, "rate_limited")
    # … and another credential reads on its own budget.
    other = send(client, "get", transcript_of(call), world.secrets["ak_read_sensitive"])
    assert other.status_code == 200


# --- the read audit -------------------------------------------------------------------------


def api_reads(conversation: Conversation) -> list[tuple[str, str | None, str]]:
    rows = TranscriptRead.objects.filter(conversation=conversation).order_by("read_at")
    return [(r.credential_label.split(" (")[0], r.client_ip, r.via) for r in rows]


def test_the_alert_list_is_audited_like_a_transcript_read(client: Client, world: World) -> None:
    call = world.conversations["in_progress"]
    alerts.create_rule(world.org, phrase="charged twice")
    record(call, [SegmentIn("u1", "user", "I was charged twice.", True)])
    org = str(world.org.pk)
    for refused in ("pat_viewer", "pat_outsider"):
        send(client, "get", alerts_of(call), world.secrets[refused], org=org)
    foreign = send(client, "get", alerts_of(call), world.secrets["ak_other_org"])
    assert_error(foreign, 404, "conversation_not_found")
    assert not TranscriptRead.objects.exists()  # refusals disclose nothing

    listed = send(client, "get", alerts_of(call), world.secrets["pat_supervisor"], org=org)
    assert listed.json()["alerts"][0]["phrase"] == "charged twice"
    (row,) = TranscriptRead.objects.filter(conversation=call)
    assert (row.via, row.user, row.client_ip) == ("api", world.users["supervisor"], "127.0.0.1")
    assert row.personal_access_token is not None
    assert row.credential_label.startswith("PAT all")


def test_api_reads_write_one_row_an_hour_per_credential_address_and_call(
    client: Client, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """150 GETs of one transcript wrote 150 rows: now a client walking the pages or polling
    the transcript and its alerts writes one row an hour."""
    call, other = world.conversations["in_progress"], world.conversations["ringing"]
    say(call, 5)
    secret = world.secrets["ak_read_sensitive"]
    walk(client, f"{transcript_of(call)}?limit=2", secret, "segments")  # three pages
    for _ in range(3):
        send(client, "get", transcript_of(call), secret)
        send(client, "get", alerts_of(call), secret)
    assert api_reads(call) == [("API key rs", "127.0.0.1", "api")]

    # Another credential, another address, another call: each is recorded at once.
    send(client, "get", transcript_of(call), world.secrets["ak_manage"])
    send(client, "get", alerts_of(call), secret, REMOTE_ADDR="203.0.113.7")
    send(client, "get", transcript_of(other), secret)
    assert api_reads(call) == [
        ("API key rs", "127.0.0.1", "api"),
        ("API key m", "127.0.0.1", "api"),
        ("API key rs", "203.0.113.7", "api"),
    ]
    assert api_reads(other) == [("API key rs", "127.0.0.1", "api")]

    later = time.time() + disclosure.GLANCE_WINDOW + 1
    monkeypatch.setattr(time, "time", lambda: later)
    send(client, "get", transcript_of(call), secret)
    assert len(api_reads(call)) == 4  # the next hour: a row again


def test_a_read_whose_row_cannot_be_written_discloses_nothing(
    client: Client, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = world.conversations["in_progress"]
    alerts.create_rule(world.org, phrase="charged twice")
    record(call, [SegmentIn("u1", "user", "I was charged twice.", True)])
    real = TranscriptRead.objects.bulk_create

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the database is away")

    monkeypatch.setattr(TranscriptRead.objects, "bulk_create", broken)
    secret = world.secrets["ak_read_sensitive"]
    for path in (transcript_of(call), alerts_of(call)):
        failed = send(client, "get", path, secret)
        assert_error(failed, 500, "internal_error")
        assert b"charged" not in failed.content
    monkeypatch.setattr(TranscriptRead.objects, "bulk_create", real)
    # The failed claim was released: the next read writes the row.
    assert send(client, "get", alerts_of(call), secret).status_code == 200
    assert TranscriptRead.objects.filter(conversation=call).count() == 1


# --- at most MAX_ALERT_RULES active rules ---------------------------------------------------


def test_an_organization_has_at_most_max_alert_rules(
    client: Client, world: World, settings: Any
) -> None:
    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, "MAX_ALERT_RULES": 3}
    key = world.secrets["ak_manage"]
    created = [send(client, "post", RULES, key, {"phrase": f"phrase {n}"}) for n in range(3)]
    assert [r.status_code for r in created] == [201, 201, 201]
    for secret, org in ((key, None), (world.secrets["pat_admin"], str(world.org.pk))):
        refused = send(client, "post", RULES, secret, {"phrase": "one more"}, org)
        assert_error(refused, 409, "too_many_rules")
        assert "3" in refused.json()["error"]["message"]
    assert AlertRule.objects.filter(organization=world.org).count() == 3
    alerts.create_rule(world.other_org, phrase="theirs")  # each organization its own

    # A deleted rule frees its slot.
    send(client, "delete", f"{RULES}/{created[0].json()['id']}", key)
    assert send(client, "post", RULES, key, {"phrase": "one more"}).status_code == 201
    full = send(client, "post", RULES, key, {"phrase": "and another"})
    assert_error(full, 409, "too_many_rules")
    assert AlertRule.objects.live().filter(organization=world.org).count() == 3
