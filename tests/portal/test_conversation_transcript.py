"""The conversation page's transcript (``portal/transcript.py``): catch-up of a live call,
a completed call's review with its alerts inline, the read audit and who sees it."""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser
from typing import TYPE_CHECKING

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from anyreach_listen import alerts, disclosure, transcripts
from anyreach_listen.models import (
    AlertSeverity,
    Conversation,
    TranscriptRead,
    TranscriptVia,
)
from anyreach_listen.transcripts import SegmentIn
from portal.transcript import READ_HEADER
from tests.support.world import World, login

if TYPE_CHECKING:  # a name of django-stubs only
    from django.test.client import _MonkeyPatchedWSGIResponse

GREETING = "Thanks for calling Acme, how can I help?"
COMPLAINT = "I was charged twice for my order."
ANSWER = "Sorry about that, I will refund the second charge."


def page_url(call: Conversation) -> str:
    return f"/conversations/{call.pk}/"


def fragment_url(call: Conversation) -> str:
    return f"/conversations/{call.pk}/transcript/"


def refetch(client: Client, call: Conversation, token: str) -> _MonkeyPatchedWSGIResponse:
    """The page's catch-up refetch, carrying its read token in the request header."""
    return client.get(fragment_url(call), headers={READ_HEADER: token})


def say(call: Conversation, *lines: tuple[str, str, str], final: bool = True) -> None:
    transcripts.record(call, [SegmentIn(i, role, text, final) for i, role, text in lines])


def reads(call: Conversation) -> list[tuple[str, str]]:
    return [
        (r.user.username if r.user else "", r.via)
        for r in TranscriptRead.objects.filter(conversation=call).order_by("read_at")
    ]


class Lines(HTMLParser):
    """Transcript lines by (role, segment id): their text, and their alert marks."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[tuple[str, str], str] = {}
        self.marks: dict[tuple[str, str], list[str]] = {}
        self._line: tuple[str, str] | None = None
        self._in_mark = False
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "li" and a.get("data-segment-id"):
            self._line = (a.get("data-role") or "", a["data-segment-id"] or "")
            self.lines[self._line] = ""
            self.marks[self._line] = []
            self._depth = 0
        elif self._line is not None:
            self._depth += 1
            self._in_mark = "alert-mark" in (a.get("class") or "")
            if self._in_mark:
                self.marks[self._line].append("")

    def handle_endtag(self, tag: str) -> None:
        if self._line is None:
            return
        if tag == "li" and self._depth == 0:
            self._line = None
        else:
            self._depth -= 1
            self._in_mark = False

    def handle_data(self, data: str) -> None:
        if self._line is None:
            return
        if self._in_mark:
            self.marks[self._line][-1] += data
        else:
            self.lines[self._line] += data


def lines_of(html: str) -> Lines:
    parser = Lines()
    parser.feed(html)
    return parser


@pytest.fixture
def live(world: World) -> Conversation:
    call = world.conversations["in_progress"]
    say(call, ("SG_greet", "agent", GREETING))
    return call


# --- a live call: everything said so far, at once, for those who may read it -------------


def test_supervisor_opening_a_live_call_sees_what_was_said_and_is_audited(
    client: Client, world: World, live: Conversation
) -> None:
    say(live, ("SG_ask", "user", "I was char"), final=False)  # still being said
    response = login(client, "supervisor").get(page_url(live))
    html = response.content.decode()
    found = lines_of(html).lines
    assert GREETING in found[("agent", "SG_greet")]
    assert "I was char" in found[("user", "SG_ask")]
    assert 'class="arl-line is-interim" data-role="user" data-segment-id="SG_ask"' in html
    assert "data-read-token=" in html and "/static/portal/conversation.js" in html
    assert response["Cache-Control"] == "no-store"
    assert reads(live) == [("supervisor", TranscriptVia.PORTAL)]
    row = TranscriptRead.objects.get(conversation=live)
    assert row.client_ip == "127.0.0.1" and row.api_key is None


@pytest.mark.parametrize("status", ["in_progress", "completed"])
def test_a_viewer_gets_no_transcript_and_no_read_is_recorded(
    client: Client, world: World, status: str
) -> None:
    call = world.conversations[status]
    say(call, ("SG_greet", "agent", GREETING), ("SG_ask", "user", COMPLAINT))
    alerts.create_rule(world.org, phrase="charged twice")
    say(call, ("SG_again", "user", "Charged twice, again!"))
    login(client, "viewer")
    response = client.get(page_url(call))
    assert response.status_code == 200
    html = response.content.decode()
    for words in (GREETING, COMPLAINT, "Charged twice", "charged twice", "SG_"):
        assert words not in html
    assert "data-read-token" not in html and "conversation.js" not in html
    refused = client.get(fragment_url(call))
    assert refused.status_code == 403
    assert GREETING not in refused.content.decode()
    assert READ_HEADER not in refused
    assert reads(call) == []


def test_the_catch_up_fragment_continues_the_page_read_with_its_token(
    client: Client, world: World, live: Conversation
) -> None:
    login(client, "supervisor")
    token = client.get(page_url(live)).context["transcript"].read_token
    say(live, ("SG_ask", "user", COMPLAINT))  # said between the render and the socket
    response = refetch(client, live, token)
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    found = lines_of(response.content.decode()).lines
    assert list(found) == [("agent", "SG_greet"), ("user", "SG_ask")]  # spoken order
    assert response[READ_HEADER] == token
    assert len(reads(live)) == 1  # the page view's read, continued
    # Without a token, a refetch is a read of its own, and hands out a token.
    fresh = client.get(fragment_url(live))
    assert len(reads(live)) == 2
    assert refetch(client, live, fresh[READ_HEADER]).status_code == 200
    assert len(reads(live)) == 2


def test_a_token_of_another_person_call_or_hour_is_a_new_read(
    client: Client, world: World, live: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_call = world.conversations["ringing"]
    qa = login(Client(), "qa")
    qa_token = qa.get(page_url(live)).context["transcript"].read_token
    login(client, "supervisor")
    other_token = client.get(page_url(other_call)).context["transcript"].read_token
    assert len(reads(live)) == 1

    refetch(client, live, qa_token)  # the QA analyst's read is not the supervisor's
    refetch(client, live, other_token)  # nor is a read of another call
    refetch(client, live, "forged:token")
    assert reads(live) == [("qa", "portal")] + [("supervisor", "portal")] * 3

    own = client.get(fragment_url(live))[READ_HEADER]
    monkeypatch.setattr(disclosure, "READ_CONTINUATION", dt.timedelta(seconds=-1))
    renewed = refetch(client, live, own)  # past the hour: audited again
    assert len(reads(live)) == 6 and renewed[READ_HEADER]


def test_a_fragment_of_a_call_out_of_sight_is_not_found(client: Client, world: World) -> None:
    call = world.conversations["other_team"]
    say(call, ("SG_greet", "agent", GREETING))
    assert login(client, "supervisor").get(fragment_url(call)).status_code == 404
    assert reads(call) == []


# --- a completed call: the whole transcript, its alerts inline --------------------------


def test_a_completed_call_shows_its_transcript_with_alerts_inline(
    client: Client, world: World
) -> None:
    call = world.conversations["completed"]
    alerts.create_rule(world.org, phrase="charged twice", severity=AlertSeverity.WARNING)
    alerts.create_rule(world.org, phrase="refund", role="agent", severity=AlertSeverity.CRITICAL)
    say(
        call,
        ("SG_greet", "agent", GREETING),
        ("SG_ask", "user", COMPLAINT),
        ("SG_answer", "agent", ANSWER),
    )
    html = login(client, "qa").get(page_url(call)).content.decode()
    parsed = lines_of(html)
    assert list(parsed.lines) == [("agent", "SG_greet"), ("user", "SG_ask"), ("agent", "SG_answer")]
    assert COMPLAINT in parsed.lines[("user", "SG_ask")]
    assert "Caller" in parsed.lines[("user", "SG_ask")]
    assert parsed.marks == {
        ("agent", "SG_greet"): [],
        ("user", "SG_ask"): ["Warning: “charged twice”"],
        ("agent", "SG_answer"): ["Critical: “refund”"],
    }
    assert html.count('data-alert="') == 4  # inline and in the call's list of alerts
    # The list of the call's alerts, in spoken order (both were raised in one push).
    listed = html[html.index("data-conversation-alerts") :]
    assert listed.index("“charged twice” · Caller") < listed.index("“refund” · Agent")
    assert "conversation.js" not in html  # nothing to catch up with
    assert reads(call) == [("qa", "portal")]


def test_a_completed_call_without_transcript_says_so(client: Client, world: World) -> None:
    html = login(client, "supervisor").get(page_url(world.conversations["completed"])).content
    assert b"No transcript was recorded for this call." in html
    assert b"No alerts in this call." in html


# --- the read audit: org admins only ------------------------------------------------------


def test_org_admin_sees_transcript_reads_and_a_supervisor_does_not(
    client: Client, world: World, live: Conversation
) -> None:
    login(Client(), "qa").get(page_url(live))
    transcripts.read(
        live, via=TranscriptVia.API, audit={"api_key": None}, credential_label="API key m"
    )
    supervisor = login(Client(), "supervisor")
    page = supervisor.get(page_url(live)).content.decode()
    history = supervisor.get("/history/").content.decode()
    for html in (page, history):
        assert "Transcript reads" not in html and "data-transcript-reads" not in html
        assert "API key m" not in html

    admin = login(client, "admin")
    page = admin.get(page_url(live)).content.decode()
    history = admin.get("/history/").content.decode()
    for html in (page, history):
        assert "Transcript reads" in html
        assert "API key m" in html
    # The page lists the call's reads: the admin's own page view is one of them.
    assert page.count(" · Portal · ") == 3
    for who in ("qa", "supervisor", "admin"):
        assert f"<li>{who} · Portal · " in page and f"<td>{who}</td>" in history
    assert "<li>API key m · API · " in page
    assert history.count("<td>Portal</td>") == 3 and history.count("<td>API</td>") == 1


def test_history_lists_only_the_administered_organizations_reads(
    client: Client, world: World
) -> None:
    theirs = world.conversations["other_org"]
    theirs.caller_label = "Other org caller"
    theirs.save()
    transcripts.read(theirs, via=TranscriptVia.API, audit={}, credential_label="API key x")
    html = login(client, "admin").get("/history/").content.decode()
    assert "No transcript reads yet." in html
    assert "Other org caller" not in html and "API key x" not in html


# --- queries: bounded whatever the transcript's length ------------------------------------


def _count(client: Client, url: str) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return [q["sql"] for q in captured.captured_queries]


def _same(few: list[str], many: list[str]) -> None:
    assert len(few) == len(many), "\n".join([*few, "---", *many])


@pytest.mark.parametrize("role", ["supervisor", "admin"])
def test_pages_cost_the_same_queries_whatever_was_said(
    client: Client, world: World, role: str
) -> None:
    alerts.create_rule(world.org, phrase="charged twice")
    live, done = world.conversations["in_progress"], world.conversations["completed"]
    login(client, role)

    def add(n: int, start: int) -> None:
        for call in (live, done):
            say(
                call,
                *[
                    (f"SG_{i}", "user" if i % 2 else "agent", f"line {i}, charged twice")
                    for i in range(start, start + n)
                ],
            )

    add(1, 0)
    few = [_count(client, url) for url in (page_url(live), page_url(done), fragment_url(live))]
    few.append(_count(client, "/history/"))
    add(30, 1)
    many = [_count(client, url) for url in (page_url(live), page_url(done), fragment_url(live))]
    many.append(_count(client, "/history/"))
    for a, b in zip(few, many, strict=True):
        _same(a, b)
    html = client.get(page_url(done)).content.decode()
    assert html.count('class="alert-mark') >= 31 * 2
