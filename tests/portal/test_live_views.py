"""The dashboard's and the wall's live views (``portal/live.py``, ``portal/views.py``): the
last line said in each live call for people who may read transcripts (and not a word of
it for viewers), alert badges, the listen dialog an alert's Listen opens, wall tiles that
open with their history and their alert; each shown last line an audited glance (a row an
hour per person and call); query counts that do not grow with the calls."""

from __future__ import annotations

import time

import pytest
from django.db.models import QuerySet
from django.test import Client

from anyreach_listen import alerts, disclosure
from anyreach_listen.access.roles import Role
from anyreach_listen.models import (
    Conversation,
    Membership,
    Team,
    TranscriptRead,
)
from anyreach_listen.transcripts import SegmentIn, record
from portal.views import WALL_LIMIT
from tests.support.floor import TalkingFloor, queries, same_count
from tests.support.world import World, login

SECRET = "my card number is four four one seven"  # what a viewer must never get


def talk(call: Conversation) -> None:
    """A greeting, the caller's final line and an interim still being said."""
    record(
        call,
        [
            SegmentIn("a1", "agent", "Thanks for calling Acme, how can I help?", True),
            SegmentIn("u1", "user", f"Hi, {SECRET}.", True),
            SegmentIn("a2", "agent", "Let me check that", False),
        ],
    )


def rows_html(client: Client) -> str:
    return client.get("/", headers={"HX-Request": "true"}).content.decode()


# --- the last line said ---------------------------------------------------------------------


@pytest.mark.parametrize("role", ["supervisor", "qa", "admin"])
def test_a_live_row_shows_the_last_final_line_and_who_said_it(
    client: Client, world: World, role: str
) -> None:
    call = world.conversations["in_progress"]
    talk(call)
    login(client, role)
    for html in (client.get("/").content.decode(), rows_html(client)):
        assert "Last said" in html or "<thead" not in html
        row = html.split(f'data-conversation="{call.pk}"', 1)[1].split("</tr>", 1)[0]
        assert "data-last-line" in row
        assert '<span class="last-line__role" data-role="user">Caller</span>' in row
        assert SECRET in row
        assert "Let me check" not in row  # an interim is not a line yet
    assert client.get("/").headers["Cache-Control"] == "no-store"


def test_a_viewer_gets_no_transcript_text_anywhere_on_the_dashboard(
    client: Client, world: World
) -> None:
    talk(world.conversations["in_progress"])
    alerts.create_rule(world.org, phrase="card number")
    record(world.conversations["in_progress"], [SegmentIn("u2", "user", "card number", True)])
    login(client, "viewer")
    for html in (client.get("/").content.decode(), rows_html(client)):
        assert str(world.conversations["in_progress"].pk) in html  # sees the call …
        assert 'data-count="1"' in html  # … and its alert, but not what was said
        for words in ("four four one seven", "Acme, how can", "card number", "Let me check"):
            assert words not in html
        assert "data-last-line" not in html
        assert "Last said" not in html


def test_a_row_of_an_organization_where_the_user_is_a_viewer_has_no_line(
    client: Client, world: World
) -> None:
    """A supervisor of Acme who is a viewer in Other: Other's calls carry no line."""
    supervisor = world.users["supervisor"]
    ops = Team.objects.create(organization=world.other_org, name="Ops")
    foreign = world.conversations["other_org"]
    foreign.team = ops
    foreign.save()
    Membership.objects.create(
        user=supervisor, organization=world.other_org, role=Role.VIEWER
    ).teams.set([ops])
    talk(world.conversations["in_progress"])
    record(foreign, [SegmentIn("x1", "user", "the vault code is 9931", True)])
    html = login(client, "supervisor").get("/").content.decode()
    assert str(foreign.pk) in html
    assert "vault code" not in html
    assert SECRET in html
    row = html.split(f'data-conversation="{foreign.pk}"', 1)[1].split("</tr>", 1)[0]
    assert "data-last-line" not in row


def test_an_ended_call_shows_no_line(client: Client, world: World) -> None:
    call = world.conversations["completed"]
    record(call, [SegmentIn("u1", "user", "Goodbye for now.", True)])
    html = login(client, "supervisor").get("/?status=all").content.decode()
    assert str(call.pk) in html
    assert "Goodbye for now" not in html


# --- the last line is an audited glance ------------------------------------------------------


def test_each_shown_last_line_is_an_audited_glance_once_an_hour(
    client: Client, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    talking, other = world.conversations["in_progress"], world.conversations["ringing"]
    talk(talking)
    record(other, [SegmentIn("a1", "agent", "Ringing line.", True)])
    # Shown but not a line: an ended call's; not shown: another team's.
    record(world.conversations["completed"], [SegmentIn("u1", "user", "Bye.", True)])
    record(world.conversations["other_team"], [SegmentIn("u1", "user", "Sales.", True)])
    supervisor = world.users["supervisor"]
    login(client, "supervisor")

    def reads() -> QuerySet[TranscriptRead]:
        return TranscriptRead.objects.filter(user=supervisor)

    html = client.get("/?status=all", REMOTE_ADDR="203.0.113.9").content.decode()
    assert html.count("data-last-line") >= 2 and SECRET in html
    assert sorted((str(r.conversation_id), r.via, r.client_ip) for r in reads()) == sorted(
        [(str(talking.pk), "portal", "203.0.113.9"), (str(other.pk), "portal", "203.0.113.9")]
    )
    # Refreshes within the hour (the page, its htmx rows) write nothing more.
    client.get("/")
    rows_html(client)
    assert reads().count() == 2
    # A call that starts talking is new: its row only.
    quiet = world.conversations["no_room"]
    record(quiet, [SegmentIn("a1", "agent", "Now I talk.", True)])
    assert "Now I talk." in rows_html(client)
    assert reads().count() == 3
    assert set(reads().values_list("conversation_id", flat=True)) == {
        talking.pk,
        other.pk,
        quiet.pk,
    }
    # After the hour, each shown line is a read again.
    now = time.time() + disclosure.GLANCE_WINDOW + 1
    monkeypatch.setattr(time, "time", lambda: now)
    client.get("/")
    assert reads().count() == 6


def test_a_viewers_dashboard_writes_no_read(client: Client, world: World) -> None:
    talk(world.conversations["in_progress"])
    login(client, "viewer")
    client.get("/")
    rows_html(client)
    assert not TranscriptRead.objects.exists()


# --- alert badges ---------------------------------------------------------------------------


def test_the_badge_counts_alerts_with_the_highest_severity(client: Client, world: World) -> None:
    call = world.conversations["in_progress"]
    alerts.create_rule(world.org, phrase="charged twice", severity="warning")
    alerts.create_rule(world.org, phrase="cancel", severity="critical")
    alerts.create_rule(world.org, phrase="thanks", severity="info")
    record(call, [SegmentIn("u1", "user", "I was charged twice.", True)])
    record(call, [SegmentIn("u2", "user", "Cancel it. Thanks.", True)])  # critical + info
    login(client, "supervisor")
    html = rows_html(client)
    row = html.split(f'data-conversation="{call.pk}"', 1)[1].split("</tr>", 1)[0]
    assert 'data-count="3"' in row
    assert 'data-severity="critical"' in row
    assert "3 alerts · Critical" in row
    quiet = world.conversations["ringing"]
    row = html.split(f'data-conversation="{quiet.pk}"', 1)[1].split("</tr>", 1)[0]
    assert 'data-count="0"' in row and "hidden" in row


# --- the listen dialog ----------------------------------------------------------------------


def test_the_listen_dialog_is_a_panel_with_the_transcript_so_far_and_an_audited_read(
    client: Client, world: World
) -> None:
    call = world.conversations["in_progress"]
    talk(call)
    response = login(client, "supervisor").get(f"/conversations/{call.pk}/listen-dialog/")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    html = response.content.decode()
    assert "<html" not in html  # a fragment
    assert f'data-conversation="{call.pk}"' in html
    assert 'data-arl-action="listen"' in html
    assert 'data-autoconnect="false"' in html  # the page starts it, with audio, in the click
    assert 'data-segment-id="u1"' in html and SECRET in html
    assert 'class="arl-line is-interim" data-role="agent" data-segment-id="a2"' in html
    read = TranscriptRead.objects.get(conversation=call)
    assert (read.user, read.via) == (world.users["supervisor"], "portal")


def test_the_listen_dialog_refuses_viewers_and_hides_other_teams(
    client: Client, world: World
) -> None:
    call = world.conversations["in_progress"]
    talk(call)
    viewer = login(Client(), "viewer").get(f"/conversations/{call.pk}/listen-dialog/")
    assert viewer.status_code == 403
    assert SECRET not in viewer.content.decode()
    login(client, "supervisor")
    other = world.conversations["other_team"]
    assert client.get(f"/conversations/{other.pk}/listen-dialog/").status_code == 404
    assert not TranscriptRead.objects.exists()


# --- wall tiles -----------------------------------------------------------------------------


def test_wall_tiles_open_with_their_history_and_their_alert(client: Client, world: World) -> None:
    call = world.conversations["in_progress"]
    talk(call)
    alerts.create_rule(world.org, phrase="card number", severity="critical")
    record(call, [SegmentIn("u2", "user", "my card number again", True)])
    login(client, "supervisor")
    for html in (
        client.get("/wall/").content.decode(),
        client.get(f"/wall/tiles/{call.pk}/").content.decode(),
    ):
        tile = html.split(f'data-wall-tile="{call.pk}"', 1)[1].split('class="wall__open"', 1)[0]
        assert 'data-alert-severity="critical"' in tile
        # The panel's list holds the recorded lines in spoken order, in the live markup.
        ids = [part.split('"', 1)[0] for part in tile.split('data-segment-id="')[1:]]
        assert ids == ["a1", "u1", "a2", "u2"]
        assert "data-arl-empty" not in tile
        assert SECRET in tile
        assert "Critical alert" in tile
    quiet = world.conversations["ringing"]
    html = client.get("/wall/").content.decode()
    tile = html.split(f'data-wall-tile="{quiet.pk}"', 1)[1].split('class="wall__open"', 1)[0]
    assert "wall__tile--alert" not in html.split(f'data-wall-tile="{quiet.pk}"', 1)[0][-200:]
    assert "data-arl-empty" in tile
    # Each shown history is an audited portal read: the wall (3 tiles), then the one tile.
    reads = TranscriptRead.objects.filter(user=world.users["supervisor"], via="portal")
    assert reads.filter(conversation=call).count() == 3  # two walls and one tile fetch
    assert reads.count() == 3 * 2 + 1


# --- a page costs the same number of queries whatever the number of calls, lines, alerts ---


def test_the_dashboard_with_lines_and_alerts_costs_the_samequeries(
    client: Client, db: None
) -> None:
    floor = TalkingFloor()
    client.force_login(floor.user)
    floor.add_live_calls(1)
    one, html = queries(client, "/")
    assert html.count("data-last-line") == 1 and "refund, call 1." in html
    one_rows, _ = queries(client, "/", **{"HX-Request": "true"})
    floor.add_live_calls(49)
    fifty, html = queries(client, "/")
    assert html.count("data-last-line") == 50 and "refund, call 50." in html
    assert html.count('data-count="1"') == 50
    same_count(one, fifty)
    fifty_rows, _ = queries(client, "/", **{"HX-Request": "true"})
    same_count(one_rows, fifty_rows)
    # The last lines' audit: one INSERT for the calls new to the person, none after.
    assert [inserts(one), inserts(fifty), inserts(one_rows), inserts(fifty_rows)] == [1, 1, 0, 0]
    assert TranscriptRead.objects.filter(user=floor.user).count() == 50


def inserts(sql: list[str]) -> int:
    table = TranscriptRead._meta.db_table
    return sum(1 for q in sql if q.startswith("INSERT") and table in q)


def test_the_wall_with_histories_costs_the_samequeries(client: Client, db: None) -> None:
    floor = TalkingFloor()
    client.force_login(floor.user)
    floor.add_live_calls(1)
    one, html = queries(client, "/wall/")
    assert html.count('data-segment-id="u1"') == 1
    floor.add_live_calls(WALL_LIMIT - 1)
    full, html = queries(client, "/wall/")
    assert html.count('data-segment-id="u1"') == WALL_LIMIT
    assert html.count("wall__tile--alert") == WALL_LIMIT
    same_count(one, full)
