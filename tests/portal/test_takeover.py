"""portal/takeover.py: "Take over" in the portal, role by role: the section and its script only
for people who may take a live call over, the start-or-renew and hand-back views (CSRF, the
API's errors, the per-user rate limit), who holds a call on the pages that show presence,
the span marked in the transcript (``portal/transcript.py``), and the audit lists of the
conversation and history pages.

``assist.takeover`` is a stand-in (``tests/support/portal_takeover.py``) but for one test
through the real module with LiveKit and the agent faked; the real path is tests/e2e's.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import jwt
import pytest
from django.test import Client
from django.utils import timezone

from anyreach_listen import transcripts
from anyreach_listen.api.errors import ApiError, Errors
from anyreach_listen.assist import guidance, signing, takeover
from anyreach_listen.livekit import service
from anyreach_listen.models import Conversation, ConversationStatus, Takeover, TakeoverEnd
from anyreach_listen.transcripts import SegmentIn
from portal.transcript import TakeoverMark
from tests.support.portal_takeover import TakeOver
from tests.support.world import TEST_LISTEN_SETTINGS, World, login

T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
GRANT_FIELDS = {"id", "url", "token", "room_name", "expires_at"}


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> TakeOver:
    return TakeOver().install(monkeypatch)


@pytest.fixture
def live(world: World) -> Conversation:
    """The world's live Support call, named, started at T0, its holders-to-be named."""
    call = world.conversations[ConversationStatus.IN_PROGRESS]
    Conversation.objects.filter(pk=call.pk).update(started_at=T0, caller_label="+1 555 0142")
    call.refresh_from_db()
    for role, (first, last) in {"supervisor": ("Ana", "Lopez"), "admin": ("Cy", "Diaz")}.items():
        user = world.users[role]
        user.first_name, user.last_name = first, last
        user.save()
    return call


def start_url(call: Conversation) -> str:
    return f"/conversations/{call.pk}/takeover/"


def hand_back_url(call: Conversation) -> str:
    return f"/conversations/{call.pk}/takeover/hand-back/"


def held_by(world: World, call: Conversation, role: str, **fields: Any) -> Takeover:
    """A takeover row of ``call`` by the world's ``role`` user (held unless ended)."""
    pk = uuid.uuid4()
    values: dict[str, Any] = {
        "started_at": T0 + dt.timedelta(seconds=30),
        "expires_at": timezone.now() + dt.timedelta(minutes=5),
        **fields,
    }
    return Takeover.objects.create(
        id=pk,
        conversation=call,
        user=world.users[role],
        identity=f"supervisor-{pk}",
        agent_identity="agent-ava",
        **values,
    )


def error_of(response: Any) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error"]["code"], body["error"]["message"]


def page(client: Client, call: Conversation) -> str:
    response = client.get(f"/conversations/{call.pk}/")
    assert response.status_code == 200
    return response.content.decode()


# ---- the section ----


@pytest.mark.parametrize(
    ("role", "offered"), [("admin", True), ("supervisor", True), ("qa", False), ("viewer", False)]
)
def test_the_section_shows_to_who_may_take_a_live_call_over(
    client: Client, world: World, live: Conversation, role: str, offered: bool
) -> None:
    html = page(login(client, role), live)
    assert ('data-takeover-action="start"' in html) is offered
    assert ('data-takeover-action="mute" aria-pressed="false" hidden' in html) is offered
    assert ('data-takeover-action="hand-back" hidden' in html) is offered
    assert (f'data-start-url="/conversations/{live.pk}/takeover/"' in html) is offered
    assert ("/static/portal/takeover.js" in html) is offered
    assert ('role="status" data-takeover-status' in html) is offered
    # Never on an ended call: nobody to speak with.
    done = page(client, world.conversations[ConversationStatus.COMPLETED])
    assert "data-takeover-action" not in done and "takeover.js" not in done


def test_the_listen_dialog_offers_it_to_who_may(client: Client, live: Conversation) -> None:
    url = f"/conversations/{live.pk}/listen-dialog/"
    supervisor = login(client, "supervisor").get(url).content.decode()
    assert 'data-takeover-action="start"' in supervisor
    qa = login(Client(), "qa").get(url).content.decode()
    assert "data-takeover" not in qa.replace("data-takeover-marks", "")
    # The dashboard loads the section's script for those it may offer it to.
    assert "/static/portal/takeover.js" in login(Client(), "supervisor").get("/").content.decode()
    assert "takeover.js" not in login(Client(), "qa").get("/").content.decode()


# ---- start and renew ----


def test_a_supervisor_takes_over_then_renews(
    client: Client, world: World, live: Conversation, stand_in: TakeOver
) -> None:
    login(client, "supervisor")
    started = client.post(start_url(live))
    assert started.status_code == 201, started.content
    assert started["Cache-Control"] == "no-store"
    grant = started.json()
    assert set(grant) == GRANT_FIELDS
    assert grant["url"] == TEST_LISTEN_SETTINGS["LIVEKIT_URL"]
    assert grant["room_name"] == live.livekit_room
    assert grant["expires_at"].endswith("Z")
    renewed = client.post(start_url(live))
    assert renewed.status_code == 200, renewed.content
    assert renewed.json()["id"] == grant["id"]
    assert stand_in.done == ["start", "renew"]
    assert [call.audit["user"] for call in stand_in.calls] == [world.users["supervisor"]] * 2
    assert takeover.held(live) is not None


@pytest.mark.parametrize(("role", "status"), [("admin", 201), ("qa", 403), ("viewer", 403)])
def test_who_may_take_over(
    client: Client, live: Conversation, stand_in: TakeOver, role: str, status: int
) -> None:
    response = login(client, role).post(start_url(live))
    assert response.status_code == status, response.content
    if status == 403:
        assert error_of(response) == (
            403,
            "insufficient_scope",
            "Your role cannot take this call over.",
        )
        assert stand_in.calls == [] and not Takeover.objects.exists()


def test_calls_one_cannot_see_and_signed_out_people(
    client: Client, world: World, stand_in: TakeOver
) -> None:
    other_team = world.conversations["other_team"]
    signed_out = client.post(start_url(other_team))
    assert error_of(signed_out) == (401, "not_authenticated", "Sign in to take calls over.")
    login(client, "supervisor")  # of Support: Sales' calls do not exist for them
    for call in (other_team, world.conversations["other_org"]):
        assert error_of(client.post(start_url(call)))[:2] == (404, "conversation_not_found")
        assert error_of(client.post(hand_back_url(call)))[:2] == (404, "conversation_not_found")
    assert client.post(f"/conversations/{uuid.uuid4()}/takeover/").status_code == 404
    assert stand_in.calls == []


def test_only_post_and_only_with_the_csrf_token(
    world: World, live: Conversation, stand_in: TakeOver
) -> None:
    browser = Client(enforce_csrf_checks=True)
    login(browser, "supervisor")
    refused = browser.post(start_url(live))
    assert refused.status_code == 403 and b"CSRF" in refused.content
    assert browser.post(hand_back_url(live)).status_code == 403
    assert stand_in.calls == []
    browser.get(f"/conversations/{live.pk}/")  # sets the CSRF cookie, as the page does
    token = browser.cookies["csrftoken"].value
    started = browser.post(start_url(live), headers={"X-CSRFToken": token})
    assert started.status_code == 201, started.content
    got = browser.get(start_url(live))
    assert error_of(got)[:2] == (405, "method_not_allowed") and got["Allow"] == "POST"


@pytest.mark.parametrize(
    "refusal",
    [
        ApiError(Errors.ALREADY_TAKEN_OVER, "Taken over by Cy Diaz since 10:00 UTC."),
        ApiError(Errors.AGENT_NOT_PRESENT),
        ApiError(Errors.CONVERSATION_NOT_ACTIVE, "Only a live call can be taken over."),
        ApiError(Errors.TAKEOVER_NOT_CONFIRMED, "The agent did not confirm its pause: timeout."),
    ],
    ids=lambda e: e.code,
)
def test_refusals_answer_the_apis_code_and_words(
    client: Client, live: Conversation, stand_in: TakeOver, refusal: ApiError
) -> None:
    stand_in.refusal = refusal
    response = login(client, "supervisor").post(start_url(live))
    assert error_of(response) == (refusal.status, refusal.code, refusal.message)
    assert response["Content-Type"] == "application/json"


def test_start_and_hand_back_count_against_the_users_rate_limit(
    client: Client, live: Conversation, stand_in: TakeOver, settings: Any
) -> None:
    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, "RATE_LIMIT_REQUESTS": 3}
    login(client, "supervisor")
    assert client.post(start_url(live)).status_code == 201
    assert client.post(start_url(live)).status_code == 200
    held = takeover.held(live)
    assert held is not None
    assert client.post(hand_back_url(live), {"id": str(held.pk)}).status_code == 200
    limited = client.post(start_url(live))
    status, code, message = error_of(limited)
    assert (status, code) == (429, "rate_limited") and "takeover requests" in message
    assert int(limited["Retry-After"]) > 0
    assert stand_in.done == ["start", "renew", "hand_back"]
    # Per user: another supervisor's budget is their own.
    assert login(Client(), "admin").post(start_url(live)).status_code == 201


# ---- hand back ----


def test_the_holder_hands_back_their_own_takeover_only(
    client: Client, world: World, live: Conversation, stand_in: TakeOver
) -> None:
    login(client, "supervisor")
    nothing = client.post(hand_back_url(live), {"id": str(uuid.uuid4())})
    assert error_of(nothing) == (404, "takeover_not_found", "You hold no takeover of this call.")

    # Cy's: Ana may not end it from the portal, even knowing its id (the API's DELETE may).
    theirs = held_by(world, live, "admin")
    assert error_of(client.post(hand_back_url(live), {"id": str(theirs.pk)}))[0] == 404
    theirs.refresh_from_db()
    assert theirs.ended_at is None
    Takeover.objects.filter(pk=theirs.pk).update(ended_at=timezone.now(), ended_by="handed_back")

    grant = client.post(start_url(live)).json()
    assert client.post(hand_back_url(live), {"id": "not-a-uuid"}).status_code == 404
    assert client.post(hand_back_url(live)).status_code == 404  # no id at all
    ended = client.post(hand_back_url(live), {"id": grant["id"]})
    assert ended.status_code == 200, ended.content
    assert ended["Cache-Control"] == "no-store"
    body = ended.json()
    assert (body["id"], body["holder"], body["ended_by"]) == (
        grant["id"],
        "Ana Lopez",
        "handed_back",
    )
    assert body["ended_at"] is not None
    assert stand_in.done == ["start", "hand_back"]
    # Once more (a second tab, the page's unload after its button): already ended.
    again = client.post(hand_back_url(live), {"id": grant["id"]})
    assert error_of(again)[:2] == (404, "takeover_not_found")
    assert login(Client(), "qa").post(hand_back_url(live), {"id": grant["id"]}).status_code == 403


def test_through_the_real_takeover_module_with_livekit_and_the_agent_faked(
    client: Client, world: World, live: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The views' wiring with ``assist.takeover`` itself: the pause and the resume are
    acknowledged as a real agent would, the participant removal answered."""
    orders: list[str] = []
    removed: list[tuple[str, str]] = []

    def perform_rpc(room: str, identity: str, method: str, payload: str, *, timeout_ms: int) -> str:
        order = signing.unverified_id(payload)
        orders.append(order.rsplit(":", 1)[1])
        return signing.acknowledgement(order)

    async def remove_participant(room: str, identity: str, client: Any) -> bool:
        removed.append((room, identity))
        return True

    monkeypatch.setattr(guidance, "find_agent", lambda room: "agent-ava")
    monkeypatch.setattr(service, "perform_rpc", perform_rpc)
    monkeypatch.setattr(service, "remove_participant", remove_participant)

    login(client, "supervisor")
    started = client.post(start_url(live))
    assert started.status_code == 201, started.content
    grant = started.json()
    claims = jwt.decode(
        grant["token"], TEST_LISTEN_SETTINGS["LIVEKIT_API_SECRET"], algorithms=["HS256"]
    )
    assert claims["sub"] == f"supervisor-{grant['id']}" and claims["name"] == "Ana Lopez"
    assert claims["video"]["canPublishSources"] == ["microphone"]
    assert client.post(start_url(live)).json()["id"] == grant["id"]  # renewed
    ended = client.post(hand_back_url(live), {"id": grant["id"]})
    assert ended.status_code == 200, ended.content
    assert ended.json()["ended_by"] == TakeoverEnd.HANDED_BACK
    assert orders == ["pause", "resume"]
    assert removed == [(live.livekit_room, f"supervisor-{grant['id']}")]
    row = Takeover.objects.get(pk=grant["id"])
    assert row.user == world.users["supervisor"] and row.resumed_at is not None


# ---- who holds the call: presence and the dashboard ----


def test_presence_and_the_dashboard_name_the_holder(
    client: Client, world: World, live: Conversation
) -> None:
    login(client, "supervisor")
    assert "Taken over by" not in page(client, live)
    held_by(world, live, "admin")
    taken = '<span class="visually-hidden">. </span>Taken over by Cy Diaz</span></p>'
    assert taken in page(client, live)
    fragment = client.get(f"/conversations/{live.pk}/presence/").content.decode()
    assert taken in fragment
    row = client.get("/").content.decode().split(f'data-conversation="{live.pk}"')[1]
    assert "Taken over by Cy Diaz" in row.split("</tr>")[0]
    rows = client.get("/", headers={"HX-Request": "true"}).content.decode()  # htmx refresh
    assert "Taken over by Cy Diaz" in rows
    # QA sees who is in the call too; viewers see nobody.
    assert "Taken over by Cy Diaz" in page(login(Client(), "qa"), live)
    viewer = login(Client(), "viewer")
    assert "Taken over by" not in page(viewer, live) and "Cy Diaz" not in page(viewer, live)
    assert "Taken over by" not in viewer.get("/").content.decode()


def test_the_dashboard_names_a_credential_or_username_holder(
    client: Client, world: World, live: Conversation
) -> None:
    held_by(world, live, "qa")  # a username: the qa user has no name
    login(client, "admin")
    assert "Taken over by qa" in client.get("/").content.decode()
    Takeover.objects.update(credential_label="PAT wallboard")
    assert "Taken over by PAT wallboard" in client.get("/").content.decode()
    Takeover.objects.update(ended_at=timezone.now(), ended_by=TakeoverEnd.HANDED_BACK)
    assert "Taken over by" not in client.get("/").content.decode()


# ---- the span in the transcript ----


def say(call: Conversation, *lines: tuple[str, str, str, int]) -> None:
    for sid, role, text, seconds in lines:
        transcripts.record(
            call, [SegmentIn(sid, role, text, True)], at=T0 + dt.timedelta(seconds=seconds)
        )


def test_the_review_marks_the_span_where_it_happened(client: Client, world: World) -> None:
    done = world.conversations[ConversationStatus.COMPLETED]
    Conversation.objects.filter(pk=done.pk).update(started_at=T0)
    done.refresh_from_db()
    say(done, ("a1", "agent", "How can I help?", 5), ("u1", "user", "A refund.", 20))
    say(done, ("u2", "user", "Thanks, Ana.", 80), ("a2", "agent", "Anything else?", 130))
    user = world.users["supervisor"]
    user.first_name, user.last_name = "Ana", "Lopez"
    user.save()
    held_by(
        world,
        done,
        "supervisor",
        started_at=T0 + dt.timedelta(seconds=30),
        ended_at=T0 + dt.timedelta(seconds=100),
        ended_by=TakeoverEnd.LEFT,
    )
    # One whose pause was never confirmed: the caller heard nobody else, no mark.
    held_by(
        world,
        done,
        "admin",
        started_at=T0 + dt.timedelta(seconds=110),
        ended_at=T0 + dt.timedelta(seconds=111),
        ended_by=TakeoverEnd.NOT_PAUSED,
    )
    html = page(login(client, "supervisor"), done)
    review = html.split('class="review__lines"')[1].split("</ol>")[0]
    order = [
        chunk.split('"')[0]
        for chunk in review.split('data-segment-id="')[1:] + review.split('data-edge="')[1:]
    ]
    assert set(order) == {"a1", "u1", "u2", "a2", "started", "ended"}
    positions = {key: review.index(f'="{key}"') for key in ("u1", "started", "u2", "ended", "a2")}
    assert positions["u1"] < positions["started"] < positions["u2"] < positions["ended"]
    assert positions["ended"] < positions["a2"]
    assert "Taken over by Ana Lopez" in review and "0:30" in review
    assert "Handed back" in review and "Ana Lopez · The supervisor left the call" in review
    assert "1:40" in review and review.count('data-edge="') == 2


def test_a_live_panel_gets_the_marks_and_the_catch_up_too(
    client: Client, world: World, live: Conversation
) -> None:
    say(live, ("a1", "agent", "How can I help?", 5))
    row = held_by(world, live, "admin")
    login(client, "supervisor")
    html = page(client, live)
    marks = html.split(f'<template data-takeover-marks="{live.pk}">')[1].split("</template>")[0]
    assert f'data-takeover-id="{row.pk}" data-edge="started"' in marks
    assert "Taken over by Cy Diaz" in marks and 'data-edge="ended"' not in marks
    # Not among the panel's own lines: the lines template knows segments and guidance only.
    panel = html.split("data-arl-transcript")[1].split("</ol>")[0]
    assert "arl-takeover" not in panel
    # The catch-up fragment (after a reconnect) brings the end too.
    Takeover.objects.filter(pk=row.pk).update(
        ended_at=T0 + dt.timedelta(seconds=90), ended_by=TakeoverEnd.HANDED_BACK
    )
    fragment = client.get(f"/conversations/{live.pk}/transcript/").content.decode()
    assert 'data-edge="started"' in fragment and 'data-edge="ended"' in fragment
    assert "Handed back<span" in fragment and "Cy Diaz · Handed back" in fragment
    dialog = client.get(f"/conversations/{live.pk}/listen-dialog/").content.decode()
    assert dialog.count("data-takeover-id") == 2
    # Viewers read no transcript, so no marks either.
    viewer = page(login(Client(), "viewer"), live)
    assert "data-takeover-marks" not in viewer and "Cy Diaz" not in viewer


def test_the_marks_words_for_every_way_it_ends(world: World, live: Conversation) -> None:
    row = held_by(world, live, "supervisor", started_at=T0 + dt.timedelta(seconds=65))
    [start] = TakeoverMark.of(row, live)
    assert (start.title, start.how, start.offset) == ("Taken over by Ana Lopez", "", "1:05")
    words = {}
    for how in TakeoverEnd:
        row.ended_at, row.ended_by = T0 + dt.timedelta(seconds=70), how
        marks = TakeoverMark.of(row, live)
        words[how] = [(m.title, m.how) for m in marks[1:]]
    assert words == {
        "handed_back": [("Handed back", "Ana Lopez · Handed back")],
        "left": [("Handed back", "Ana Lopez · The supervisor left the call")],
        "access_lost": [("Handed back", "Ana Lopez · The supervisor lost the right")],
        "call_ended": [("Takeover ended", "Ana Lopez · The call ended")],
        "expired": [("Handed back", "Ana Lopez · The token expired unrenewed")],
        "not_paused": [],
    }


# ---- the audit: the conversation page and the history ----


def test_the_conversation_page_lists_the_calls_takeovers(
    client: Client, world: World, live: Conversation
) -> None:
    first = held_by(
        world,
        live,
        "supervisor",
        ended_at=T0 + dt.timedelta(minutes=2),
        ended_by=TakeoverEnd.EXPIRED,
        resume_error="no answer",
    )
    second = held_by(world, live, "admin", started_at=T0 + dt.timedelta(minutes=3))
    for role in ("supervisor", "qa", "admin"):
        html = page(login(Client(), role), live)
        listed = html.split("data-takeovers>")[1].split("</ul>")[0]
        assert listed.index(str(first.pk)) < listed.index(str(second.pk))  # oldest first
        assert "Ana Lopez · " in listed and "The token expired unrenewed" in listed
        assert "(the agent did not resume: no answer)" in listed
        assert "Cy Diaz · " in listed and "now · held" in listed
    assert "data-takeovers" not in page(login(client, "viewer"), live)


def test_the_history_lists_ones_own_and_for_admins_everyones(
    client: Client, world: World, live: Conversation
) -> None:
    mine = held_by(
        world, live, "supervisor", ended_at=T0 + dt.timedelta(minutes=2), ended_by="handed_back"
    )
    theirs = held_by(
        world, world.conversations["other_team"], "admin", started_at=T0 + dt.timedelta(hours=1)
    )
    other_org = world.conversations["other_org"]
    outside = Takeover.objects.create(
        conversation=other_org,
        user=world.users["outsider"],
        identity=f"supervisor-{uuid.uuid4()}",
        agent_identity="agent",
        expires_at=timezone.now(),
    )

    def listed(role: str) -> str:
        html = login(Client(), role).get("/history/").content.decode()
        return (
            html.split("<table data-takeovers>")[1].split("</table>")[0]
            if "data-takeovers" in html
            else ""
        )

    supervisor = listed("supervisor")
    assert str(mine.pk) in supervisor and str(theirs.pk) not in supervisor
    assert "+1 555 0142" in supervisor and "Handed back" in supervisor
    admin = listed("admin")
    assert admin.index(str(theirs.pk)) < admin.index(str(mine.pk))  # newest first
    assert "Held now" in admin and str(outside.pk) not in admin
    assert listed("qa") == ""  # may not take over, took none: no section


def test_the_history_says_when_there_is_none_yet(client: Client, world: World) -> None:
    html = login(client, "supervisor").get("/history/").content.decode()
    assert '<h2 id="takeovers-title">Takeovers</h2>' in html and "No takeovers yet." in html
