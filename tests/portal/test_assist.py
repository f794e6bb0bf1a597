"""Agent Assist in the portal (``portal/assist.py``): presence and the guidance box, role
by role (viewers see none of it), the guidance view calling ``guidance.give``, the
dashboard's listener counts, and guidance inline in the transcript (``portal/transcript.py``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from anyreach_listen import transcripts
from anyreach_listen.api.errors import ApiError, Errors
from anyreach_listen.assist import guidance
from anyreach_listen.conf import listen_settings
from anyreach_listen.listening.minting import grant_listen
from anyreach_listen.models import (
    Conversation,
    ConversationStatus,
    Guidance,
    ListenSession,
    ListenVia,
)
from anyreach_listen.transcripts import SegmentIn
from portal import assist, transcript
from portal.assist import FRAGMENT_HEADER
from tests.support.portal_guidance import Given
from tests.support.world import TEST_LISTEN_SETTINGS, World, login

T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)


def listening(world: World, call: Conversation, role: str, **state: Any) -> ListenSession:
    """A portal listen session of the world's ``role`` user, joined unless told otherwise."""
    user = world.users[role]
    session = grant_listen(call, via=ListenVia.PORTAL, audit={"user": user}).listen_session
    ListenSession.objects.filter(pk=session.pk).update(**{"joined_at": timezone.now(), **state})
    return session


@pytest.fixture
def live_call(world: World) -> Conversation:
    call = world.conversations[ConversationStatus.IN_PROGRESS]
    ana = world.users["supervisor"]
    ana.first_name, ana.last_name = "Ana", "Lopez"
    ana.save()
    listening(world, call, "supervisor")
    listening(world, call, "qa")
    listening(world, call, "admin", left_at=timezone.now())  # left: not there now
    listening(world, call, "admin", joined_at=None)  # a token, never joined
    return call


def page(client: Client, call: Conversation) -> str:
    return client.get(f"/conversations/{call.pk}/").content.decode()


# ---- presence ----


@pytest.mark.parametrize("role", ["admin", "supervisor", "qa"])
def test_the_conversation_page_names_who_listens_now(
    client: Client, live_call: Conversation, role: str
) -> None:
    html = page(login(client, role), live_call)
    assert 'id="presence"' in html
    assert 'Listening now:</span> <span class="presence__names">Ana Lopez, qa</span>' in html


def test_a_viewer_sees_no_presence_nor_box(client: Client, live_call: Conversation) -> None:
    html = page(login(client, "viewer"), live_call)
    assert 'id="presence"' not in html and "Listening now" not in html
    assert "Ana Lopez" not in html
    assert "data-guidance-form" not in html and "assist.js" not in html
    response = client.get(f"/conversations/{live_call.pk}/presence/")
    assert response.status_code == 403
    assert "Ana" not in response.content.decode()


def test_the_presence_fragment_is_fresh_and_only_for_calls_one_sees(
    client: Client, world: World, live_call: Conversation
) -> None:
    login(client, "supervisor")
    response = client.get(f"/conversations/{live_call.pk}/presence/")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert response[FRAGMENT_HEADER] == "presence"
    html = response.content.decode()
    assert html.count('id="presence"') == 1 and "Ana Lopez, qa" in html
    ListenSession.objects.filter(user=world.users["qa"]).update(left_at=timezone.now())
    html = client.get(f"/conversations/{live_call.pk}/presence/").content.decode()
    assert "Ana Lopez</span>" in html and "qa" not in html.split("presence__names")[1]
    other = world.conversations["other_team"]
    assert client.get(f"/conversations/{other.pk}/presence/").status_code == 404


def test_no_one_listening_says_so(client: Client, world: World) -> None:
    call = world.conversations[ConversationStatus.IN_PROGRESS]
    signed_out = client.get(f"/conversations/{call.pk}/presence/")
    assert signed_out.status_code == 302  # to the login page
    html = login(client, "admin").get(f"/conversations/{call.pk}/presence/").content.decode()
    assert 'data-count="0"' in html and "no one" in html


def test_the_dashboard_counts_listeners_for_those_who_may_see_them(
    client: Client, world: World, live_call: Conversation
) -> None:
    html = login(client, "supervisor").get("/").content.decode()
    assert '<th scope="col">Listening</th>' in html
    row = html.split(f'data-conversation="{live_call.pk}"')[1].split("</tr>")[0]
    assert 'data-listeners data-count="2">2</td>' in row
    html = login(Client(), "viewer").get("/").content.decode()
    assert "Listening" not in html and "data-listeners" not in html


def test_the_listen_dialog_has_presence_and_the_box(
    client: Client, live_call: Conversation
) -> None:
    html = login(client, "supervisor").get(f"/conversations/{live_call.pk}/listen-dialog/")
    text = html.content.decode()
    assert 'id="presence"' in text and "Ana Lopez, qa" in text
    assert 'aria-label="Guidance to the agent"' in text
    qa = login(Client(), "qa").get(f"/conversations/{live_call.pk}/listen-dialog/").content
    assert b'id="presence"' in qa and b"data-guidance-form" not in qa


# ---- the guidance box ----


@pytest.mark.parametrize(
    ("role", "has_box"), [("admin", True), ("supervisor", True), ("qa", False), ("viewer", False)]
)
def test_the_box_shows_to_who_may_guide_a_live_call(
    client: Client, world: World, role: str, has_box: bool
) -> None:
    login(client, role)
    html = page(client, world.conversations[ConversationStatus.IN_PROGRESS])
    assert ('aria-label="Guidance to the agent"' in html) is has_box
    assert ('value="whisper">Whisper</button>' in html) is has_box
    assert ('value="say">Say now</button>' in html) is has_box
    assert ('id="guidance-status" role="status"' in html) is has_box
    # Never on an ended call: nothing could be delivered.
    assert "data-guidance-form" not in page(client, world.conversations["completed"])


@pytest.fixture
def given(monkeypatch: pytest.MonkeyPatch) -> Given:
    stand_in = Given()
    monkeypatch.setattr(guidance, "give", stand_in)
    return stand_in


def post(client: Client, call: Conversation, data: dict[str, str], *, fragment: bool = True) -> Any:
    headers = {FRAGMENT_HEADER: "1"} if fragment else {}
    return client.post(f"/conversations/{call.pk}/guidance/", data, headers=headers)


def test_posting_guidance_calls_give_with_who_and_answers_the_status(
    client: Client, world: World, given: Given
) -> None:
    call = world.conversations[ConversationStatus.IN_PROGRESS]
    response = post(
        login(client, "supervisor"), call, {"mode": "say", "text": "Offer a refund.\r\nNow."}
    )
    assert response.status_code == 201
    assert "no-store" in response["Cache-Control"]
    assert response[FRAGMENT_HEADER] == "guidance-status"  # the one answer assist.js parses
    [sent] = given.calls
    assert sent.conversation == call and sent.mode == "say"
    assert sent.text == "Offer a refund.\nNow."  # as typed, one character per line end
    assert sent.audit["user"] == world.users["supervisor"] and sent.request is not None
    html = response.content.decode()
    assert 'data-guidance-result="delivered"' in html
    assert "Delivered: the agent says it now (42 ms)." in html
    # Its transcript line, for the page to show at once.
    assert '<template data-guidance-line><li class="arl-line arl-guidance"' in html
    assert 'data-mode="say" data-status="delivered"' in html


@pytest.mark.parametrize("role", ["qa", "viewer"])
def test_who_may_not_guide_is_refused_and_nothing_is_sent(
    client: Client, world: World, given: Given, role: str
) -> None:
    call = world.conversations[ConversationStatus.IN_PROGRESS]
    assert post(login(client, role), call, {"mode": "whisper", "text": "Hi"}).status_code == 403
    assert given.calls == []


def test_other_teams_calls_are_not_found(client: Client, world: World, given: Given) -> None:
    response = post(
        login(client, "supervisor"), world.conversations["other_team"], {"mode": "say", "text": "x"}
    )
    assert response.status_code == 404 and given.calls == []


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"mode": "shout", "text": "Hi"}, "Choose Whisper or Say now."),
        ({"mode": "say", "text": "  \r\n "}, "Write the guidance first."),
        ({"mode": "say", "text": "x" * 1001}, "at most 1,000 characters"),
    ],
)
def test_an_invalid_form_is_answered_without_sending(
    client: Client, world: World, given: Given, data: dict[str, str], says: str
) -> None:
    response = post(login(client, "admin"), world.conversations["in_progress"], data)
    assert response.status_code == 400
    html = response.content.decode()
    assert 'data-guidance-result="failed"' in html and says in html
    assert given.calls == []


def test_exactly_1000_characters_are_sent(client: Client, world: World, given: Given) -> None:
    response = post(
        login(client, "admin"),
        world.conversations["in_progress"],
        {"mode": "whisper", "text": "é" * 1000},
    )
    assert response.status_code == 201 and len(given.calls[0].text) == 1000


@pytest.mark.parametrize(
    "error",
    [
        ApiError(Errors.AGENT_NOT_PRESENT),
        ApiError(Errors.GUIDANCE_NOT_DELIVERED, "The agent did not take it: no acknowledgement."),
        ApiError(Errors.CONVERSATION_NOT_ACTIVE, "Only a live call's agent can be guided."),
    ],
)
def test_a_refusal_shows_its_reason(
    client: Client, world: World, given: Given, error: ApiError
) -> None:
    given.refusal = error
    response = post(
        login(client, "supervisor"),
        world.conversations["in_progress"],
        {"mode": "say", "text": "Hi"},
    )
    assert response.status_code == error.status
    html = response.content.decode()
    assert 'data-guidance-result="failed"' in html
    assert f"Not delivered: {error.message}" in html.replace("&#x27;", "'")


def test_without_script_the_page_comes_back_with_the_status(
    client: Client, world: World, given: Given
) -> None:
    call = world.conversations[ConversationStatus.IN_PROGRESS]
    response = post(
        login(client, "admin"), call, {"mode": "whisper", "text": "Slow down."}, fragment=False
    )
    assert response.status_code == 302 and response["Location"] == f"/conversations/{call.pk}/"
    assert "Whispered to the agent: delivered." in page(client, call)


def test_guidance_needs_the_csrf_token(world: World, given: Given) -> None:
    client = login(Client(enforce_csrf_checks=True), "admin")
    response = post(client, world.conversations["in_progress"], {"mode": "say", "text": "Hi"})
    assert response.status_code == 403 and given.calls == []
    assert (
        client.get(f"/conversations/{world.conversations['in_progress'].pk}/guidance/").status_code
        == 405
    )


def test_guidance_is_rate_limited_per_user_like_listen_tokens(
    client: Client, world: World, given: Given, settings: Any
) -> None:
    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, "RATE_LIMIT_REQUESTS": 3}
    call = world.conversations[ConversationStatus.IN_PROGRESS]
    login(client, "supervisor")
    # The portal's listen tokens and its guidance share the signed-in user's budget.
    assert client.post(f"/listen/conversations/{call.pk}/token").status_code == 200
    answers = [post(client, call, {"mode": "say", "text": "Hi"}) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 429]
    refused = answers[-1]
    assert 1 <= int(refused["Retry-After"]) <= int(listen_settings.RATE_LIMIT_WINDOW)
    assert "no-store" in refused["Cache-Control"]
    html = refused.content.decode()
    assert 'data-guidance-result="failed"' in html
    assert refused[FRAGMENT_HEADER] == "guidance-status"
    retry = refused["Retry-After"]
    assert f"Not delivered: Too many guidance requests; retry in {retry} s." in html
    assert len(given.calls) == 2  # the refused one never reached the agent
    # Without script: the page, with the same words.
    assert post(client, call, {"mode": "say", "text": "Hi"}, fragment=False).status_code == 302
    assert "Guidance not delivered: Too many guidance requests" in page(client, call)
    assert len(given.calls) == 2
    # Everyone has a budget of their own.
    assert post(login(Client(), "admin"), call, {"mode": "say", "text": "Hi"}).status_code == 201


def test_the_guidance_view_runs_outside_any_request_transaction(
    client: Client, world: World, given: Given, monkeypatch: pytest.MonkeyPatch
) -> None:
    # guidance.give commits its audit row before sending: even with ATOMIC_REQUESTS on,
    # it must find no transaction of the request around it.
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    depth: list[int] = []

    def give(*args: Any, **kwargs: Any) -> Guidance:
        depth.append(len(connection.atomic_blocks))
        return given(*args, **kwargs)

    monkeypatch.setattr(guidance, "give", give)
    outside = len(connection.atomic_blocks)  # the test's own transaction
    call = world.conversations[ConversationStatus.IN_PROGRESS]
    assert post(login(client, "admin"), call, {"mode": "say", "text": "Hi"}).status_code == 201
    assert depth == [outside]
    # The same request to an ordinary view is atomic: the check above can fail.
    seen: list[int] = []

    def listeners_now(conversation: Conversation) -> list[ListenSession]:
        seen.append(len(connection.atomic_blocks))
        return []

    monkeypatch.setattr(assist.presence, "listeners_now", listeners_now)
    assert client.get(f"/conversations/{call.pk}/presence/").status_code == 200
    assert seen == [outside + 1]


# ---- guidance in the transcript ----


def given_at(
    world: World, call: Conversation, at: dt.datetime, text: str, **fields: Any
) -> Guidance:
    return Guidance.objects.create(
        conversation=call,
        user=world.users["supervisor"],
        mode=fields.pop("mode", "whisper"),
        text=text,
        created_at=at,
        **fields,
    )


def said(call: Conversation, seconds: int, segment_id: str, role: str, text: str) -> None:
    transcripts.record(
        call, [SegmentIn(segment_id, role, text, True)], at=T0 + dt.timedelta(seconds=seconds)
    )


def order(html: str, *pieces: str) -> list[int]:
    return [html.index(piece) for piece in pieces]


@pytest.fixture
def guided_call(world: World) -> Conversation:
    call = world.conversations[ConversationStatus.IN_PROGRESS]
    Conversation.objects.filter(pk=call.pk).update(started_at=T0)
    call.refresh_from_db()
    said(call, 1, "a1", "agent", "Hello, how can I help?")
    said(call, 5, "u1", "user", "I was charged twice.")
    given_at(world, call, T0 + dt.timedelta(seconds=6), "Offer the refund.", status="delivered")
    given_at(
        world,
        call,
        T0 + dt.timedelta(seconds=7),
        "Say sorry.",
        mode="say",
        status="failed",
        reason="no agent",
    )
    said(call, 9, "a2", "agent", "I am sorry, I will refund it.")
    return call


def test_guidance_shows_inline_on_the_live_page_and_in_the_catch_up(
    client: Client, guided_call: Conversation
) -> None:
    html = page(login(client, "qa"), guided_call)
    positions = order(html, "I was charged twice.", "Offer the refund.", "Say sorry.", "I am sorry")
    assert positions == sorted(positions)
    assert 'class="arl-line arl-guidance" data-guidance-id=' in html
    assert 'data-mode="say" data-status="failed"' in html
    assert "supervisor · <span data-guidance-status>Delivered</span>" in html
    fragment = client.get(f"/conversations/{guided_call.pk}/transcript/").content.decode()
    positions = order(fragment, "I was charged twice.", "Offer the refund.", "I am sorry")
    assert positions == sorted(positions)


def test_guidance_shows_in_an_ended_calls_review(client: Client, guided_call: Conversation) -> None:
    Conversation.objects.filter(pk=guided_call.pk).update(status=ConversationStatus.COMPLETED)
    html = page(login(client, "admin"), guided_call)
    assert "review__line--guidance" in html
    positions = order(html, "I was charged twice.", "Offer the refund.", "Say sorry.", "I am sorry")
    assert positions == sorted(positions)
    assert "Failed: no agent" in html
    assert "0:06" in html  # the time into the call


def test_a_viewer_never_sees_guidance(client: Client, guided_call: Conversation) -> None:
    html = page(login(client, "viewer"), guided_call)
    assert "Offer the refund." not in html and "arl-guidance" not in html
    response = client.get(f"/conversations/{guided_call.pk}/transcript/")
    assert response.status_code == 403 and b"Offer the refund." not in response.content


def test_interleave_puts_guidance_before_the_first_line_said_after_it() -> None:
    at = [T0 + dt.timedelta(seconds=s) for s in (1, 5, 3, 9)]  # spoken order, times not sorted
    lines = [
        transcript.GuidanceLine.of(Guidance(created_at=T0 + dt.timedelta(seconds=s), text=str(s)))
        for s in (10, 4, 0, 4)
    ]
    merged = transcript.interleave(at, lambda t: t, lines)
    shown = [
        f"g{x.text}" if isinstance(x, transcript.GuidanceLine) else int((x - T0).seconds)
        for x in merged
    ]
    assert shown == ["g0", 1, "g4", "g4", 5, 3, 9, "g10"]


def test_guidance_at_the_time_of_a_line_goes_after_it_and_alone_in_time_order() -> None:
    lines = [transcript.GuidanceLine.of(Guidance(created_at=T0, text=t)) for t in "ab"]
    assert transcript.interleave([T0], lambda t: t, lines) == [T0, *lines]
    later = transcript.GuidanceLine.of(Guidance(created_at=T0 + dt.timedelta(seconds=1)))
    assert transcript.interleave([], lambda t: t, [later, *lines]) == [*lines, later]


# ---- markup in guidance and names is text ----

MARKUP = "<img src=x onerror=alert(1)>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


@pytest.fixture
def marked_up(world: World) -> Conversation:
    """A live call whose guidance text, author name and failure reason are markup."""
    user = world.users["supervisor"]
    user.first_name, user.last_name = MARKUP, ""
    user.save()
    call = world.conversations[ConversationStatus.IN_PROGRESS]
    Conversation.objects.filter(pk=call.pk).update(started_at=T0)
    call.refresh_from_db()
    said(call, 1, "a1", "agent", "Hello.")
    given_at(world, call, T0 + dt.timedelta(seconds=2), MARKUP, status="failed", reason=MARKUP)
    listening(world, call, "supervisor")
    return call


def assert_text_only(html: str, times: int) -> None:
    assert "<img" not in html
    assert html.count(ESCAPED) >= times, html


def test_markup_in_guidance_and_names_shows_as_text_on_the_page_and_in_the_catch_up(
    client: Client, marked_up: Conversation
) -> None:
    html = page(login(client, "admin"), marked_up)
    assert_text_only(html, 3)  # the line's text, its author, the presence line
    fragment = client.get(f"/conversations/{marked_up.pk}/transcript/").content.decode()
    assert_text_only(fragment, 2)
    presence_line = client.get(f"/conversations/{marked_up.pk}/presence/").content.decode()
    assert_text_only(presence_line, 1)
    Conversation.objects.filter(pk=marked_up.pk).update(status=ConversationStatus.COMPLETED)
    assert_text_only(page(client, marked_up), 3)  # the review: text, author, reason


def test_markup_in_guidance_and_names_shows_as_text_in_the_status(
    client: Client, marked_up: Conversation, given: Given
) -> None:
    login(client, "supervisor")
    response = post(client, marked_up, {"mode": "whisper", "text": MARKUP})
    assert response.status_code == 201
    assert_text_only(response.content.decode(), 2)  # the new line's text and author
    given.refusal = ApiError(Errors.GUIDANCE_NOT_DELIVERED, f"The agent refused: {MARKUP}")
    response = post(client, marked_up, {"mode": "say", "text": "Hi"})
    assert response.status_code == 502
    assert_text_only(response.content.decode(), 1)
