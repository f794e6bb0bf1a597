"""Portal views (``portal/views.py``), role by role: dashboard, conversation page, wall, history."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from anyreach_listen.models import Conversation, ConversationStatus, Membership, Team
from portal.paging import ROWS_MAX, ROWS_STEP
from portal.views import WALL_LIMIT
from tests.support.floor import Floor, queries, same_count
from tests.support.urls import user_token_url
from tests.support.world import World, login


def test_pages_need_login(client: Client, db: None) -> None:
    for url in ["/", "/wall/", "/history/"]:
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_supervisor_sees_only_their_teams_live_calls(client: Client, world: World) -> None:
    html = login(client, "supervisor").get("/").content.decode()
    assert str(world.conversations["in_progress"].pk) in html
    assert str(world.conversations["other_team"].pk) not in html
    assert str(world.conversations["other_org"].pk) not in html
    assert str(world.conversations["completed"].pk) not in html  # live filter by default


def test_admin_sees_the_whole_organization(client: Client, world: World) -> None:
    html = login(client, "admin").get("/?status=all").content.decode()
    assert str(world.conversations["other_team"].pk) in html
    assert str(world.conversations["completed"].pk) in html
    assert str(world.conversations["other_org"].pk) not in html


def test_filters_and_htmx_partial(client: Client, world: World) -> None:
    login(client, "admin")
    response = client.get("/?status=completed", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert "<html" not in html  # a fragment for htmx
    assert str(world.conversations["completed"].pk) in html
    assert str(world.conversations["in_progress"].pk) not in html
    html = client.get("/?status=all&team=Sales").content.decode()
    assert str(world.conversations["other_team"].pk) in html
    assert str(world.conversations["in_progress"].pk) not in html
    world.conversations["ringing"].caller_label = "+1 555 0199"
    world.conversations["ringing"].save()
    html = client.get("/?status=all&q=0199").content.decode()
    assert str(world.conversations["ringing"].pk) in html
    assert str(world.conversations["in_progress"].pk) not in html


@pytest.mark.parametrize(
    ("role", "has_controls"),
    [("supervisor", True), ("qa", True), ("admin", True), ("viewer", False)],
)
def test_conversation_page_listen_controls_by_role(
    client: Client, world: World, role: str, has_controls: bool
) -> None:
    html = (
        login(client, role)
        .get(f"/conversations/{world.conversations['in_progress'].pk}/")
        .content.decode()
    )
    assert "data-arl-panel" in html
    assert ('data-arl-action="listen"' in html) is has_controls
    assert "/public/listen-sdk" in html


def test_conversation_page_hides_other_teams(client: Client, world: World) -> None:
    login(client, "supervisor")
    assert client.get(f"/conversations/{world.conversations['other_team'].pk}/").status_code == 404


def test_history_own_sessions_and_admin_sees_everyone(client: Client, world: World) -> None:
    login(client, "supervisor").post(user_token_url(world.conversations["in_progress"].pk))
    qa = login(Client(), "qa")
    assert "No listen sessions yet" in qa.get("/history/").content.decode()
    assert "supervisor" in client.get("/history/").content.decode()
    assert "supervisor" in login(Client(), "admin").get("/history/").content.decode()


def test_wall_shows_live_calls_the_user_may_hear(client: Client, world: World) -> None:
    html = login(client, "supervisor").get("/wall/").content.decode()
    assert html.count("data-wall-tile=") == 3  # triggered, ringing, in progress (with rooms)
    assert str(world.conversations["no_room"].pk) not in html
    assert str(world.conversations["other_team"].pk) not in html
    viewer = login(Client(), "viewer").get("/wall/").content.decode()
    assert "data-wall-tile=" not in viewer
    tile = client.get(f"/wall/tiles/{world.conversations['in_progress'].pk}/")
    assert tile.status_code == 200 and b"data-arl-panel" in tile.content
    assert client.get(f"/wall/tiles/{world.conversations['other_team'].pk}/").status_code == 404


def test_foreign_team_data_does_not_leak_on_pages(client: Client, world: World) -> None:

    foreign = Team.objects.create(organization=world.other_org, name="Ops")
    world.conversations["other_org"].team = foreign
    world.conversations["other_org"].save()
    membership = Membership.objects.get(user=world.users["supervisor"], organization=world.org)
    Membership.teams.through.objects.create(membership=membership, team=foreign)  # bad data
    login(client, "supervisor")
    for url in ["/?status=all", "/wall/"]:
        response = client.get(url)
        assert response.status_code == 200
        assert str(world.conversations["other_org"].pk) not in response.content.decode()


# --- a page costs the same number of queries whatever the number of calls on it -----------


def test_wall_renders_in_a_constant_number_ofqueries(client: Client, db: None) -> None:
    floor = Floor()
    client.force_login(floor.user)
    floor.add_live_calls(1)
    one, html = queries(client, "/wall/")
    assert html.count("data-wall-tile=") == 1
    assert html.count('data-arl-action="listen"') == 1

    floor.add_live_calls(WALL_LIMIT - 1)
    full, html = queries(client, "/wall/")
    assert WALL_LIMIT == 8
    assert html.count("data-wall-tile=") == 8
    assert html.count('data-arl-action="listen"') == 8  # every panel may listen
    same_count(one, full)


def test_dashboard_renders_in_a_constant_number_ofqueries(client: Client, db: None) -> None:
    floor = Floor()
    client.force_login(floor.user)
    floor.add_live_calls(1)
    one, html = queries(client, "/")
    assert html.count("<tr data-conversation=") == 1
    one_rows, rows = queries(client, "/", **{"HX-Request": "true"})
    assert rows.count("<tr data-conversation=") == 1

    floor.add_live_calls(ROWS_STEP + 9)  # more than the first rows
    many, html = queries(client, "/")
    assert html.count("<tr data-conversation=") == ROWS_STEP
    assert "North" in html and "South" in html  # each row shows its team
    same_count(one, many)
    many_rows, rows = queries(client, "/", **{"HX-Request": "true"})
    assert rows.count("<tr data-conversation=") == ROWS_STEP
    same_count(one_rows, many_rows)
    more_rows, rows = queries(client, f"/?rows={ROWS_STEP + 10}", **{"HX-Request": "true"})
    assert rows.count("<tr data-conversation=") == ROWS_STEP + 10
    same_count(one_rows, more_rows)


# --- the first rows, then more on request (portal/paging.py) ------------------------------


def row_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-conversation="([^"]+)"', html)


def more_row(html: str) -> str:
    """The rows' last row: how many are shown, and Show more ('' without one)."""
    found = re.search(r"<tr class=\"rows-more\".*?</tr>", html, re.S)
    return found.group(0) if found else ""


def test_the_dashboard_shows_the_newest_calls_first_then_more_on_request(
    client: Client, db: None
) -> None:
    floor = Floor()
    client.force_login(floor.user)
    calls = floor.add_live_calls(ROWS_STEP + 10)
    newest_first = [str(c.pk) for c in reversed(calls)]
    html = client.get("/").content.decode()
    assert row_ids(html) == newest_first[:ROWS_STEP]
    tail = more_row(html)
    assert f"Showing {ROWS_STEP} of {ROWS_STEP + 10} conversations." in tail
    assert f'data-more-rows="{ROWS_STEP + 10}">Show 10 more</button>' in tail
    assert 'colspan="9"' in tail  # the whole width of a transcript reader's table

    # Show more's request (and every refresh after it): the first rows again, and the rest.
    rows = client.get(f"/?rows={ROWS_STEP + 10}", headers={"HX-Request": "true"})
    assert "<html" not in rows.content.decode()
    assert row_ids(rows.content.decode()) == newest_first
    assert more_row(rows.content.decode()) == ""  # every call is shown: no Show more

    # A call ended since: the rows close up, none twice, and the count says so.
    Conversation.objects.filter(pk=calls[-1].pk).update(status=ConversationStatus.COMPLETED)
    html = client.get(f"/?rows={ROWS_STEP}", headers={"HX-Request": "true"}).content.decode()
    assert row_ids(html) == newest_first[1 : ROWS_STEP + 1]
    assert f"Showing {ROWS_STEP} of {ROWS_STEP + 9} conversations." in more_row(html)


def test_filters_count_what_they_match(client: Client, db: None) -> None:
    floor = Floor()
    client.force_login(floor.user)
    floor.add_live_calls(ROWS_STEP * 2 + 2)  # as many North calls as South ones
    html = client.get("/?team=North").content.decode()
    assert len(row_ids(html)) == ROWS_STEP
    assert f"Showing {ROWS_STEP} of {ROWS_STEP + 1} conversations." in more_row(html)
    assert f'data-more-rows="{ROWS_STEP + 1}">Show 1 more' in more_row(html)


@pytest.mark.parametrize("asked", ["", "0", "-5", "many", "1e3"])
def test_a_missing_or_bad_row_count_gives_the_first_rows(
    client: Client, db: None, asked: str
) -> None:
    floor = Floor()
    client.force_login(floor.user)
    floor.add_live_calls(ROWS_STEP + 1)
    html = client.get(f"/?rows={asked}", headers={"HX-Request": "true"}).content.decode()
    assert len(row_ids(html)) == ROWS_STEP


def test_at_most_rows_max_are_rendered_and_filters_find_the_others(
    client: Client, db: None
) -> None:
    floor = Floor()
    client.force_login(floor.user)
    floor.add_live_calls(ROWS_MAX + 1)
    html = client.get("/?rows=100000", headers={"HX-Request": "true"}).content.decode()
    assert len(row_ids(html)) == ROWS_MAX
    tail = more_row(html)
    assert f"Showing {ROWS_MAX} of {ROWS_MAX + 1} conversations, the newest" in tail
    assert "filter or search for the others" in tail
    assert "data-more-rows" not in tail  # nothing more to ask for


def test_a_few_calls_have_no_show_more(client: Client, world: World) -> None:
    html = login(client, "supervisor").get("/").content.decode()
    assert row_ids(html) and more_row(html) == ""
