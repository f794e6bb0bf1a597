"""Admin site: secrets shown once on creation, the listen audit read-only."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from anyreach_listen.access.credentials import authenticate
from anyreach_listen.listening.minting import grant_listen
from anyreach_listen.models import ApiKey, Conversation, ListenSession, PersonalAccessToken
from tests.support.world import World


@pytest.fixture
def admin_client(client: Client, world: World) -> Client:
    User.objects.create_superuser("root", "root@example.com", "pw")
    client.login(username="root", password="pw")
    return client


def test_every_model_is_registered(admin_client: Client) -> None:
    index = admin_client.get("/admin/").content.decode()
    for model in [
        "organization",
        "team",
        "membership",
        "conversation",
        "apikey",
        "personalaccesstoken",
        "listensession",
        "takeover",
    ]:
        assert f"/admin/anyreach_listen/{model}/" in index


def test_creating_an_api_key_shows_the_secret_once(admin_client: Client, world: World) -> None:
    response = admin_client.post(
        "/admin/anyreach_listen/apikey/add/",
        {
            "organization": world.org.pk,
            "name": "from-admin",
            "scopes": '["conversations:read_sensitive"]',
        },
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = re.search(r'value="(ak_[^"]+)"', response.content.decode())
    assert secret is not None
    key = authenticate(secret.group(1))
    assert key.name == "from-admin" and key.created_by is not None
    # Never shown again: not on the changelist, not on the change page.
    for url in [
        "/admin/anyreach_listen/apikey/",
        f"/admin/anyreach_listen/apikey/{key.pk}/change/",
    ]:
        assert secret.group(1) not in admin_client.get(url).content.decode()


def test_creating_a_pat_shows_the_secret_once(admin_client: Client, world: World) -> None:
    response = admin_client.post(
        "/admin/anyreach_listen/personalaccesstoken/add/",
        {"user": world.users["qa"].pk, "name": "qa-cli", "scopes": '["conversations:read"]'},
    )
    secret = re.search(r'value="(pat_[^"]+)"', response.content.decode())
    assert secret is not None
    pat = authenticate(secret.group(1))
    assert isinstance(pat, PersonalAccessToken) and pat.user == world.users["qa"]


def test_invalid_scopes_are_refused(admin_client: Client, world: World) -> None:
    response = admin_client.post(
        "/admin/anyreach_listen/apikey/add/",
        {"organization": world.org.pk, "name": "bad", "scopes": '["root"]'},
    )
    assert "Unknown scopes" in response.content.decode()
    assert not ApiKey.objects.filter(name="bad").exists()


def test_listen_sessions_are_read_only(admin_client: Client, world: World) -> None:
    grant = grant_listen(world.conversations["in_progress"], via="admin")
    session = grant.listen_session
    assert admin_client.get("/admin/anyreach_listen/listensession/add/").status_code == 403
    change = admin_client.get(f"/admin/anyreach_listen/listensession/{session.pk}/change/")
    assert change.status_code == 200 and 'name="_save"' not in change.content.decode()
    admin_client.post(f"/admin/anyreach_listen/listensession/{session.pk}/change/", {"via": "api"})
    assert ListenSession.objects.get(pk=session.pk).via == "admin"
    delete = admin_client.post(
        f"/admin/anyreach_listen/listensession/{session.pk}/delete/", {"post": "yes"}
    )
    assert delete.status_code == 403


def test_membership_form_refuses_foreign_teams(admin_client: Client, world: World) -> None:
    from anyreach_listen.models import Team

    foreign = Team.objects.create(organization=world.other_org, name="Ops")
    response = admin_client.post(
        "/admin/anyreach_listen/membership/add/",
        {
            "user": world.users["outsider"].pk,
            "organization": world.org.pk,
            "role": "qa",
            "teams": [foreign.pk],
        },
    )
    assert "Pick only teams of this membership" in response.content.decode()


def test_listen_live_button_and_page(admin_client: Client, world: World) -> None:
    changelist = admin_client.get("/admin/anyreach_listen/conversation/").content.decode()
    url = f"/admin/anyreach_listen/conversation/{world.conversations['in_progress'].pk}/listen/"
    assert url in changelist
    assert f"/{world.conversations['completed'].pk}/listen/" not in changelist
    page = admin_client.get(url).content.decode()
    assert "data-arl-panel" in page and "?via=admin" in page


def test_listen_page_and_stop_action_need_permissions(client: Client, world: World) -> None:
    from django.contrib.auth.models import Permission

    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client.login(username="staff", password="pw")
    url = f"/admin/anyreach_listen/conversation/{world.conversations['in_progress'].pk}/listen/"
    assert client.get(url).status_code == 403
    staff.user_permissions.add(
        Permission.objects.get(codename="view_conversation"),
        Permission.objects.get(codename="view_listensession"),
    )
    assert client.get(url).status_code == 200
    grant_listen(world.conversations["in_progress"], via="api")  # a row to act on
    sessions = client.get("/admin/anyreach_listen/listensession/").content.decode()
    assert "stop_listeners" not in sessions
    staff.user_permissions.add(Permission.objects.get(codename="stop_listener"))
    sessions = client.get("/admin/anyreach_listen/listensession/").content.decode()
    assert "stop_listeners" in sessions


def _conversation_form(conversation: Conversation | None = None, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "team": "",
        "status": "in_progress",
        "livekit_room": "",
        "agent_label": "",
        "caller_label": "",
        "metadata": "{}",
    }
    if conversation is not None:
        base |= {
            "team": conversation.team_id or "",
            "status": conversation.status,
            "livekit_room": conversation.livekit_room or "",
            "agent_label": conversation.agent_label,
            "caller_label": conversation.caller_label,
        }
    return base | fields


def test_admin_edits_go_through_the_conversations_service(
    admin_client: Client, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anyreach_listen import conversations

    published: list[str] = []
    monkeypatch.setattr(conversations, "publish_conversation", lambda c, e: published.append(e))
    add = admin_client.post(
        "/admin/anyreach_listen/conversation/add/",
        _conversation_form(organization=world.org.pk, caller_label="From admin"),
    )
    assert add.status_code == 302, add.content
    created = Conversation.objects.get(caller_label="From admin")
    assert created.started_at is not None and published == ["admin"]

    ringing = world.conversations["ringing"]
    url = f"/admin/anyreach_listen/conversation/{ringing.pk}/change/"
    back = admin_client.post(url, _conversation_form(ringing, status="triggered"))
    assert "cannot move to triggered" in back.content.decode()
    assert admin_client.post(url, _conversation_form(ringing, status="canceled")).status_code == 302
    ringing.refresh_from_db()
    assert ringing.status == "canceled" and ringing.ended_at is not None


# --- staff rights over credentials ---------------------------------------------------------

PAT_ADD = "/admin/anyreach_listen/personalaccesstoken/add/"


def _staff(client: Client, *codenames: str) -> User:
    """A signed-in staff user with exactly these anyreach_listen permissions."""
    from django.contrib.auth.models import Permission

    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    ours = Permission.objects.filter(content_type__app_label="anyreach_listen")
    staff.user_permissions.add(*ours.filter(codename__in=codenames))
    assert staff.user_permissions.count() == len(codenames)
    client.login(username="staff", password="pw")
    return staff


def _user_choices(page: str) -> list[str]:
    select = re.search(r'<select name="user"[^>]*>(.*?)</select>', page, re.S)
    assert select is not None, page
    return re.findall(r'<option value="([^"]*)"', select.group(1))


def test_staff_without_the_permission_issue_pats_only_for_themselves(
    client: Client, world: World
) -> None:
    staff = _staff(client, "add_personalaccesstoken", "view_personalaccesstoken")
    page = client.get(PAT_ADD).content.decode()
    # One choice, selected: themselves (no empty choice, no search over every user).
    assert _user_choices(page) == [str(staff.pk)]
    assert re.search(rf'<option value="{staff.pk}" selected>', page)
    assert "data-ajax--url" not in page

    other = world.users["qa"]
    refused = client.post(PAT_ADD, {"user": other.pk, "name": "for-qa", "scopes": "[]"})
    assert refused.status_code == 200  # the form again, with the error
    assert "Select a valid choice" in refused.content.decode()
    assert not PersonalAccessToken.objects.filter(name="for-qa").exists()

    mine = client.post(PAT_ADD, {"user": staff.pk, "name": "mine", "scopes": "[]"})
    secret = re.search(r'value="(pat_[^"]+)"', mine.content.decode())
    assert secret is not None
    pat = authenticate(secret.group(1))
    assert isinstance(pat, PersonalAccessToken) and pat.user == staff and pat.created_by == staff


def test_the_permission_lets_staff_issue_pats_for_others(client: Client, world: World) -> None:
    staff = _staff(
        client, "add_personalaccesstoken", "view_personalaccesstoken", "issue_pat_for_others"
    )
    page = client.get(PAT_ADD).content.decode()
    assert "data-ajax--url" in page  # the usual search over users
    assert re.search(rf'<option value="{staff.pk}" selected>', page)  # still the default
    other = world.users["qa"]
    response = client.post(PAT_ADD, {"user": other.pk, "name": "for-qa", "scopes": "[]"})
    assert response.status_code == 200 and "pat_" in response.content.decode()
    pat = PersonalAccessToken.objects.get(name="for-qa")
    assert pat.user == other and pat.created_by == staff


def test_superusers_issue_pats_for_anyone(admin_client: Client, world: World) -> None:
    page = admin_client.get(PAT_ADD).content.decode()
    assert "data-ajax--url" in page
    admin_client.post(PAT_ADD, {"user": world.users["viewer"].pk, "name": "v", "scopes": "[]"})
    assert PersonalAccessToken.objects.get(name="v").user == world.users["viewer"]


def _change_form(client: Client, url: str, **fields: Any) -> Any:
    return client.post(url, {"scopes": "[]", "expires_at": "", "revoked_at": "", **fields})


def test_a_pat_cannot_move_to_another_user(admin_client: Client, world: World) -> None:
    pat = PersonalAccessToken.objects.get(user=world.users["qa"], name="all")
    url = f"/admin/anyreach_listen/personalaccesstoken/{pat.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert 'name="user"' not in page and "qa" in page  # shown, not editable

    moved = _change_form(admin_client, url, name="renamed", user=world.users["admin"].pk)
    assert moved.status_code == 403
    pat.refresh_from_db()
    assert pat.user == world.users["qa"] and pat.name == "all"

    # The same owner posted back, or none at all, is an ordinary edit.
    assert _change_form(admin_client, url, name="kept", user=pat.user_id).status_code == 302
    assert _change_form(admin_client, url, name="renamed").status_code == 302
    pat.refresh_from_db()
    assert pat.user == world.users["qa"] and pat.name == "renamed"


def test_an_api_key_cannot_move_to_another_organization(admin_client: Client, world: World) -> None:
    key = ApiKey.objects.get(organization=world.org, name="rs")
    url = f"/admin/anyreach_listen/apikey/{key.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert 'name="organization"' not in page and "Acme" in page

    moved = _change_form(admin_client, url, name="renamed", organization=world.other_org.pk)
    assert moved.status_code == 403
    key.refresh_from_db()
    assert key.organization == world.org and key.name == "rs"

    assert _change_form(admin_client, url, name="renamed").status_code == 302
    key.refresh_from_db()
    assert key.organization == world.org and key.name == "renamed"


def test_the_owner_is_chosen_on_creation(admin_client: Client, world: World) -> None:
    for model, field in [("apikey", "organization"), ("personalaccesstoken", "user")]:
        page = admin_client.get(f"/admin/anyreach_listen/{model}/add/").content.decode()
        assert f'name="{field}"' in page


def test_transcript_reads_and_alerts_are_read_only_audits_next_to_listens(
    admin_client: Client, world: World
) -> None:
    for model in ("transcriptread", "alert", "alertrule", "listensession"):
        assert admin_client.get(f"/admin/anyreach_listen/{model}/").status_code == 200, model
    for model in ("transcriptread", "alert", "listensession"):
        assert admin_client.get(f"/admin/anyreach_listen/{model}/add/").status_code == 403, model
    assert admin_client.get("/admin/anyreach_listen/alertrule/add/").status_code == 200


# --- the admin door checks a room's claim as every door does (issue 17, item 1) ----------

CONVERSATION_ADD = "/admin/anyreach_listen/conversation/add/"


@pytest.fixture
def livekit_asked(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``room_ownership.livekit_owner`` stubbed: ``owners`` (room -> the organization
    LiveKit's metadata names) answers; ``depths`` records, per question, how many
    transaction blocks were open beyond the test's own when LiveKit was asked."""
    from django.db import connection

    from anyreach_listen.livekit import room_ownership

    state: dict[str, Any] = {"owners": {}, "depths": [], "base": len(connection.atomic_blocks)}

    def owner(room_name: str) -> Any:
        state["depths"].append(len(connection.atomic_blocks) - state["base"])
        return state["owners"].get(room_name)

    monkeypatch.setattr(room_ownership, "livekit_owner", owner)
    return state


def _room_errors(response: Any) -> list[str]:
    assert response.status_code == 200, response.status_code  # the form again, not a redirect
    return list(response.context["adminform"].form.errors.get("livekit_room", []))


def test_a_room_outside_the_prefix_is_a_form_error_and_nothing_is_saved(
    admin_client: Client, world: World, livekit_asked: dict[str, Any]
) -> None:
    world.org.room_prefix = "acme-"
    world.org.save()
    response = admin_client.post(
        CONVERSATION_ADD,
        _conversation_form(organization=world.org.pk, livekit_room="call-1", caller_label="sq"),
    )
    assert any("start with 'acme-'" in e for e in _room_errors(response))
    assert not Conversation.objects.filter(caller_label="sq").exists()
    assert "added successfully" not in response.content.decode()


def test_a_room_another_organization_used_today_is_a_form_error(
    admin_client: Client, world: World, livekit_asked: dict[str, Any]
) -> None:
    import datetime as dt

    from django.utils import timezone

    # Other's call in room "call-9" ended an hour ago: not Acme's to take for 24 h.
    ended = Conversation.objects.create(
        organization=world.other_org,
        status="completed",
        livekit_room="call-9",
        ended_at=timezone.now() - dt.timedelta(hours=1),
    )
    response = admin_client.post(
        CONVERSATION_ADD,
        _conversation_form(organization=world.org.pk, livekit_room="call-9", caller_label="sq"),
    )
    assert _room_errors(response) == ["An active conversation already uses this room."]
    assert not Conversation.objects.filter(caller_label="sq").exists()
    assert Conversation.objects.filter(livekit_room="call-9").get() == ended


def test_a_room_livekit_gives_another_organization_is_a_form_error_asked_outside_a_transaction(
    admin_client: Client, world: World, livekit_asked: dict[str, Any]
) -> None:
    livekit_asked["owners"]["call-77"] = world.other_org.pk
    response = admin_client.post(
        CONVERSATION_ADD,
        _conversation_form(organization=world.org.pk, livekit_room="call-77", caller_label="sq"),
    )
    assert _room_errors(response) == ["This room belongs to another organization."]
    assert not Conversation.objects.filter(caller_label="sq").exists()
    # LiveKit was asked with no transaction of the admin's open (SQLite's IMMEDIATE
    # transactions hold the write lock from their start).
    assert livekit_asked["depths"] and set(livekit_asked["depths"]) == {0}


def test_setting_a_room_on_an_existing_call_checks_the_claim_outside_a_transaction(
    admin_client: Client, world: World, livekit_asked: dict[str, Any]
) -> None:
    call = world.conversations["no_room"]
    url = f"/admin/anyreach_listen/conversation/{call.pk}/change/"
    livekit_asked["owners"]["call-77"] = world.other_org.pk
    refused = admin_client.post(url, _conversation_form(call, livekit_room="call-77"))
    assert _room_errors(refused) == ["This room belongs to another organization."]
    call.refresh_from_db()
    assert call.livekit_room is None

    livekit_asked["depths"].clear()
    livekit_asked["owners"]["acme-5"] = world.org.pk
    taken = admin_client.post(url, _conversation_form(call, livekit_room="acme-5"))
    assert taken.status_code == 302
    call.refresh_from_db()
    assert call.livekit_room == "acme-5"
    # The form's check and the service's, both outside any transaction.
    assert livekit_asked["depths"] and set(livekit_asked["depths"]) == {0}


def test_an_ordinary_edit_does_not_ask_livekit(
    admin_client: Client, world: World, livekit_asked: dict[str, Any]
) -> None:
    ringing = world.conversations["ringing"]
    url = f"/admin/anyreach_listen/conversation/{ringing.pk}/change/"
    response = admin_client.post(url, _conversation_form(ringing, status="in_progress"))
    assert response.status_code == 302
    assert livekit_asked["depths"] == []


# --- the admin keeps the alert rule cap (issue 17, item 5) ---------------------------------

RULE_ADD = "/admin/anyreach_listen/alertrule/add/"


def _rule_form(organization: Any, phrase: str, **fields: Any) -> dict[str, Any]:
    return {
        "organization": organization.pk,
        "team": "",
        "phrase": phrase,
        "role": "any",
        "severity": "warning",
        "deleted_at": "",
        **fields,
    }


def test_the_admin_refuses_a_rule_past_the_cap(
    admin_client: Client, world: World, settings: Any
) -> None:
    from anyreach_listen.models import AlertRule

    settings.ANYREACH_LISTEN = {**settings.ANYREACH_LISTEN, "MAX_ALERT_RULES": 2}
    AlertRule.objects.create(organization=world.org, phrase="one")
    deleted = AlertRule.objects.create(organization=world.org, phrase="gone")
    deleted.deleted_at = deleted.created_at
    deleted.save()
    assert admin_client.post(RULE_ADD, _rule_form(world.org, "two")).status_code == 302

    refused = admin_client.post(RULE_ADD, _rule_form(world.org, "three"))
    assert refused.status_code == 200
    assert "at most 2 active alert rules" in refused.content.decode()
    assert not AlertRule.objects.filter(phrase="three").exists()
    # Another organization has its own cap.
    assert admin_client.post(RULE_ADD, _rule_form(world.other_org, "three")).status_code == 302

    # Undeleting a rule counts as adding one.
    url = f"/admin/anyreach_listen/alertrule/{deleted.pk}/change/"
    undelete = admin_client.post(url, _rule_form(world.org, "gone"))
    assert "at most 2 active alert rules" in undelete.content.decode()
    deleted.refresh_from_db()
    assert deleted.deleted_at is not None
    # Editing a live rule is not adding one.
    live = AlertRule.objects.get(phrase="one")
    edit = admin_client.post(
        f"/admin/anyreach_listen/alertrule/{live.pk}/change/",
        _rule_form(world.org, "one", severity="critical"),
    )
    assert edit.status_code == 302


def test_the_alert_list_names_the_rule_by_id_and_severity_never_its_phrase(
    admin_client: Client, world: World
) -> None:
    from anyreach_listen.models import Alert, AlertRule, TranscriptSegment

    rule = AlertRule.objects.create(
        organization=world.org, phrase="card number", severity="critical"
    )
    segment = TranscriptSegment.objects.create(
        conversation=world.conversations["in_progress"],
        segment_id="s1",
        role="user",
        text="my card number is 4111",
        final=True,
        position=1,
    )
    alert = Alert.objects.create(
        conversation=world.conversations["in_progress"], rule=rule, segment=segment
    )
    page = admin_client.get("/admin/anyreach_listen/alert/").content.decode()
    assert str(rule.pk) in page and "Critical" in page
    assert "card number" not in page
    # No page of its own (its title would name the phrase); the rule's page has it.
    assert admin_client.get(f"/admin/anyreach_listen/alert/{alert.pk}/change/").status_code == 404
    assert admin_client.get(f"/admin/anyreach_listen/alert/{alert.pk}/history/").status_code == 404
    rule_page = admin_client.get(f"/admin/anyreach_listen/alertrule/{rule.pk}/change/")
    assert "card number" in rule_page.content.decode()


# --- the takeover audit (issue 20, item 5) -------------------------------------------------


def test_takeovers_are_a_read_only_audit_with_how_each_ended(
    admin_client: Client, world: World
) -> None:
    import datetime as dt

    from django.utils import timezone

    from anyreach_listen.models import Takeover, TakeoverEnd

    now = timezone.now()
    call = world.conversations["in_progress"]
    held = Takeover.objects.create(
        conversation=call,
        user=world.users["supervisor"],
        identity="supervisor-held",
        agent_identity="agent-ava",
        expires_at=now + dt.timedelta(minutes=5),
    )
    ended = Takeover.objects.create(
        conversation=world.conversations["completed"],
        api_key=world.org.api_keys.get(name="m"),
        identity="supervisor-ended",
        agent_identity="agent-ava",
        expires_at=now,
        ended_at=now,
        ended_by=TakeoverEnd.LEFT,
        resumed_at=now,
    )
    listing = admin_client.get("/admin/anyreach_listen/takeover/")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "Held" in page and "The supervisor left the call" in page
    assert "supervisor" in page and "API key m" in page  # who, person or credential
    # Filters: by how it ended, and held now or ended.
    by_end = admin_client.get("/admin/anyreach_listen/takeover/?ended_by=left")
    assert list(by_end.context["cl"].result_list) == [ended]
    held_now = admin_client.get("/admin/anyreach_listen/takeover/?state=held")
    assert list(held_now.context["cl"].result_list) == [held]
    over = admin_client.get("/admin/anyreach_listen/takeover/?state=ended")
    assert list(over.context["cl"].result_list) == [ended]
    # Inspected, never added, changed or deleted by hand.
    detail = admin_client.get(f"/admin/anyreach_listen/takeover/{held.pk}/change/")
    assert detail.status_code == 200 and "supervisor-held" in detail.content.decode()
    assert 'name="_save"' not in detail.content.decode()
    assert admin_client.get("/admin/anyreach_listen/takeover/add/").status_code == 403
    posted = admin_client.post(
        f"/admin/anyreach_listen/takeover/{held.pk}/change/", {"ended_by": "handed_back"}
    )
    assert posted.status_code == 403
    deleted = admin_client.post(
        f"/admin/anyreach_listen/takeover/{held.pk}/delete/", {"post": "yes"}
    )
    assert deleted.status_code == 403
    held.refresh_from_db()
    assert held.ended_at is None and held.ended_by == ""
