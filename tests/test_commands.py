"""The app's operator commands (``anyreach_listen/management/commands/``):
create_organization, create_team, add_member, create_api_key, revoke_api_key, create_pat,
anyreach_bootstrap."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError
from django.utils import timezone

from anyreach_listen.access.credentials import CredentialError, issue_api_key
from anyreach_listen.access.credentials import authenticate as authenticate_credential
from anyreach_listen.models import ApiKey, Membership, Organization, PersonalAccessToken, Team
from tests.support.commands import run
from tests.support.listeners import fake_remove_listeners, mint_session, world_api_key
from tests.support.world import World


@pytest.mark.django_db
def test_create_organization_api_key_and_pat() -> None:
    org_id, _ = run("create_organization", "Globex", "--embed-origin", "https://crm.globex.test")
    org = Organization.objects.get(pk=org_id.strip())
    assert org.slug == "globex"
    assert org.allowed_embed_origins == ["https://crm.globex.test"]

    secret, err = run(
        "create_api_key", "globex", "--name", "backend", "--scope", "conversations:read_sensitive"
    )
    assert "only once" in err
    key = authenticate_credential(secret.strip())
    assert isinstance(key, ApiKey) and key.scopes == ["conversations:read_sensitive"]

    User.objects.create_user("ann")
    secret, _ = run(
        "create_pat",
        "ann",
        "--name",
        "cli",
        "--scope",
        "conversations:read,conversations:manage",
        "--expires-in-days",
        "30",
    )
    pat = authenticate_credential(secret.strip())
    assert sorted(pat.scopes) == ["conversations:manage", "conversations:read"]
    assert pat.expires_at is not None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("create_api_key", "nope", "--name", "x"), "No organization"),
        (("create_pat", "nobody", "--name", "x"), "No user"),
        (("create_organization", "X", "--embed-origin", "crm.example.com"), "not an origin"),
    ],
)
def test_commands_reject_bad_input(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run(*args)


@pytest.mark.django_db
def test_unknown_scope_is_rejected() -> None:
    Organization.objects.create(name="A", slug="a")
    with pytest.raises(CommandError, match="Unknown scopes"):
        run("create_api_key", "a", "--name", "x", "--scope", "conversations:everything")


def test_run_recorder_needs_the_portal_url(settings: Any) -> None:
    # The worker delivers what it hears to the portal: without its URL it cannot start.
    settings.ANYREACH_LISTEN = {
        **settings.ANYREACH_LISTEN,
        "RECORDER": {"AGENT_NAME": "rec", "PER_ROOM": 1, "PORTAL_URL": ""},
    }
    with pytest.raises(CommandError, match="--portal-url or set"):
        run("run_recorder")
    with pytest.raises(CommandError, match="not an http"):
        run("run_recorder", "--portal-url", "portal.example")


# --- teams and memberships -------------------------------------------------------------------


@pytest.fixture
def acme(db: None) -> Organization:
    org = Organization.objects.create(name="Acme", slug="acme")
    Team.objects.create(organization=org, name="Support")
    Team.objects.create(organization=org, name="Sales")
    return org


def test_create_team_prints_its_id_and_refuses_a_second_of_that_name(acme: Organization) -> None:
    out, _ = run("create_team", "acme", "Billing")
    team = Team.objects.get(pk=out.strip())
    assert (team.organization, team.name) == (acme, "Billing")
    with pytest.raises(CommandError, match=f"already has a team named 'Billing' .id {team.pk}"):
        run("create_team", str(acme.pk), "Billing")
    with pytest.raises(CommandError, match="at most 200 characters"):
        run("create_team", "acme", "x" * 201)
    assert acme.teams.count() == 3


def membership_state(user: User, org: Organization) -> tuple[str, list[str]]:
    membership = Membership.objects.get(user=user, organization=org)
    return membership.role, sorted(t.name for t in membership.teams.all())


def test_add_member_states_the_membership_and_is_idempotent(acme: Organization) -> None:
    ann = User.objects.create_user("ann")
    out, err = run("add_member", "ann", "acme", "--role", "supervisor", "--team", "Support")
    assert out.startswith("Added ann in Acme as supervisor (teams: Support)") and not err
    assert membership_state(ann, acme) == ("supervisor", ["Support"])

    out, _ = run("add_member", "ann", "acme", "--role", "supervisor", "--team", "Support")
    assert out.startswith("Unchanged")
    assert Membership.objects.filter(user=ann).count() == 1

    sales = acme.teams.get(name="Sales")
    out, _ = run("add_member", "ann", "acme", "--role", "qa", "--team", "Support",
                 "--team", str(sales.pk))  # fmt: skip
    assert out.startswith("Updated ann in Acme as qa (teams: Sales, Support)")
    assert membership_state(ann, acme) == ("qa", ["Sales", "Support"])

    # The teams become exactly those given: none given, none kept (said on stderr).
    out, err = run("add_member", "ann", "acme", "--role", "viewer")
    assert membership_state(ann, acme) == ("viewer", [])
    assert "sees no calls" in err
    _, err = run("add_member", "ann", "acme", "--role", "admin")
    assert membership_state(ann, acme) == ("admin", []) and not err  # admins see every call


def test_add_member_takes_a_demoted_members_listeners_out(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    removed = fake_remove_listeners(monkeypatch)
    supervisor = world.users["supervisor"]
    session = mint_session(world, user=supervisor)
    with django_capture_on_commit_callbacks(execute=True):
        run("add_member", "supervisor", world.org.slug, "--role", "viewer",
            "--team", world.team.name)  # fmt: skip
    session.refresh_from_db()
    assert session.revoked_at is not None
    assert removed == [(session.conversation.livekit_room, session.listener_identity)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nobody", "acme", "--role", "qa"), "No user 'nobody'"),
        (("ann", "nope", "--role", "qa"), "No organization with slug or id 'nope'"),
        (("ann", "acme", "--role", "boss"), "Unknown role 'boss'. Known: admin, supervisor"),
        (("ann", "acme", "--role", "qa", "--team", "Legal"), "no team named 'Legal'.*'Sales'"),
    ],
)
def test_add_member_names_what_it_cannot_find(
    acme: Organization, args: tuple[str, ...], message: str
) -> None:
    User.objects.create_user("ann")
    with pytest.raises(CommandError, match=message):
        run("add_member", *args)
    assert not Membership.objects.exists()


# --- API keys: expiry and revocation -------------------------------------------------------


def test_create_api_key_expires_in_days(acme: Organization) -> None:
    secret, err = run("create_api_key", "acme", "--name", "ci", "--scope",
                      "conversations:manage", "--expires-in-days", "7")  # fmt: skip
    key = authenticate_credential(secret.strip())
    assert key.expires_at is not None
    assert abs(key.expires_at - (timezone.now() + dt.timedelta(days=7))) < dt.timedelta(minutes=1)
    assert "expires" in err
    no_expiry, _ = run("create_api_key", "acme", "--name", "forever")
    assert authenticate_credential(no_expiry.strip()).expires_at is None


@pytest.mark.parametrize("command", ["create_api_key", "create_pat"])
@pytest.mark.parametrize("days", ["0", "-3", "40000"])
def test_an_expiry_must_be_a_positive_number_of_days(
    acme: Organization, command: str, days: str
) -> None:
    User.objects.create_user("acme")  # create_pat's first argument is a username
    with pytest.raises(CommandError, match="--expires-in-days must be from 1"):
        run(command, "acme", "--name", "x", "--expires-in-days", days)
    assert not ApiKey.objects.exists() and not PersonalAccessToken.objects.exists()


@pytest.mark.parametrize(
    "how", ["display_prefix", "lookup_id", "secret", "name_and_organization", "prefix_in_org"]
)
def test_revoke_api_key_stops_it_and_takes_its_listeners_out(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Callable[..., Any],
    how: str,
) -> None:
    removed = fake_remove_listeners(monkeypatch)
    key = world_api_key(world)  # "rs", conversations:read_sensitive
    secret = world.secrets["ak_read_sensitive"]
    session = mint_session(world, api_key=key)
    given = {
        "display_prefix": [key.display_prefix],
        "lookup_id": [key.lookup_id],
        "secret": [secret],
        "name_and_organization": ["rs", "--organization", world.org.slug],
        "prefix_in_org": [key.display_prefix, "--organization", str(world.org.pk)],
    }[how]
    with django_capture_on_commit_callbacks(execute=True):
        out, _ = run("revoke_api_key", *given)
    assert f"Revoked API key {key.display_prefix} (rs)" in out
    assert "1 listener" in out
    with pytest.raises(CredentialError) as refused:
        authenticate_credential(secret)
    assert refused.value.error.code == "credentials_revoked"
    session.refresh_from_db()
    assert session.revoked_at is not None
    assert removed == [(session.conversation.livekit_room, session.listener_identity)]
    # Again: nothing more to do, and it says so.
    out, _ = run("revoke_api_key", key.display_prefix)
    assert "already revoked" in out
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 3  # the others still work


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ak_000000000000_…",), "No API key ak_000000000000_…"),
        (("rs",), "add --organization"),
        (("nope", "--organization", "acme"), "No API key named 'nope'"),
        (("twin", "--organization", "acme"), "2 live keys are named 'twin'"),
        (("x", "--organization", "nowhere"), "No organization"),
    ],
)
def test_revoke_api_key_refuses_what_it_cannot_single_out(
    world: World, args: tuple[str, ...], message: str
) -> None:
    issue_api_key(world.org, "twin", [])
    issue_api_key(world.org, "twin", [])
    with pytest.raises(CommandError, match=message):
        run("revoke_api_key", *args)
    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()


def test_revoke_api_key_by_prefix_stays_inside_the_organization_named(world: World) -> None:
    other = ApiKey.objects.get(organization=world.other_org)
    with pytest.raises(CommandError, match="No API key"):
        run("revoke_api_key", other.display_prefix, "--organization", world.org.slug)
    other.refresh_from_db()
    assert other.revoked_at is None


# --- anyreach_bootstrap ----------------------------------------------------------------------


def api_key(secret: str) -> ApiKey:
    key = authenticate_credential(secret)
    assert isinstance(key, ApiKey)
    return key


def bootstrap(*args: str) -> dict[str, Any]:
    out, _ = run("anyreach_bootstrap", "--json", *args)
    result: dict[str, Any] = json.loads(out)  # exactly one JSON object
    return result


@pytest.mark.django_db
def test_bootstrap_makes_everything_once_then_reuses_it() -> None:
    ann = User.objects.create_user("ann")
    first = bootstrap("--user", "ann", "--organization", "Acme Corp", "--team", "Support")
    assert set(first) >= {"organization_id", "team_id", "user", "api_key"}
    assert first["user"] == "ann" and first["password"] is None
    assert first["created"] == {
        "organization": True, "team": True, "user": False, "membership": True, "api_key": True
    }  # fmt: skip
    org = Organization.objects.get(pk=first["organization_id"])
    assert (org.name, org.slug) == ("Acme Corp", "acme-corp")
    assert Team.objects.get(pk=first["team_id"]).organization == org
    assert membership_state(ann, org) == ("admin", ["Support"])
    key = authenticate_credential(first["api_key"])
    assert isinstance(key, ApiKey) and key.organization == org
    assert key.scopes == ["conversations:manage"] and first["api_key_prefix"] == key.display_prefix

    again = bootstrap("--user", "ann", "--organization", "Acme Corp", "--team", "Support")
    assert again["api_key"] is None and not any(again["created"].values())
    assert (again["organization_id"], again["team_id"]) == (first["organization_id"],
                                                            first["team_id"])  # fmt: skip
    assert again["api_key_prefix"] == key.display_prefix
    assert (Organization.objects.count(), Team.objects.count(), ApiKey.objects.count()) == (1, 1, 1)
    assert Membership.objects.count() == 1

    another = bootstrap("--user", "ann", "--organization", "Acme Corp", "--team", "Support",
                        "--new-key")  # fmt: skip
    assert another["api_key"] and another["created"]["api_key"]
    assert authenticate_credential(another["api_key"]) != key
    assert ApiKey.objects.count() == 2 and authenticate_credential(first["api_key"]) == key


@pytest.mark.django_db
def test_bootstrap_replaces_a_revoked_key_and_makes_a_member_admin() -> None:
    ann = User.objects.create_user("ann")
    first = bootstrap("--user", "ann")
    org = Organization.objects.get(pk=first["organization_id"])
    assert (org.name, org.slug) == ("Default", "default")
    run("add_member", "ann", "default", "--role", "viewer")
    ApiKey.objects.update(revoked_at=timezone.now())
    again = bootstrap("--user", "ann")
    assert again["created"]["membership"] is False
    assert membership_state(ann, org) == ("admin", ["Default"])
    assert again["api_key"] and api_key(again["api_key"]).organization == org


@pytest.mark.django_db
def test_bootstrap_needs_an_existing_user_unless_told_to_create_one() -> None:
    with pytest.raises(CommandError, match=r"No user 'ann'.*--create-user"):
        run("anyreach_bootstrap", "--user", "ann")
    assert not Organization.objects.exists() and not ApiKey.objects.exists()

    made = bootstrap("--user", "ann", "--create-user")
    assert made["created"]["user"] is True and made["password"]
    ann = User.objects.get(username="ann")
    assert ann.check_password(made["password"]) and not ann.is_staff
    # Run again: the user exists, so no new password (the old one still works).
    again = bootstrap("--user", "ann", "--create-user")
    assert again["password"] is None and again["created"]["user"] is False
    ann.refresh_from_db()
    assert ann.check_password(made["password"])


@pytest.mark.django_db
def test_bootstrap_prints_what_it_made_or_reused() -> None:
    User.objects.create_user("ann")
    out, _ = run("anyreach_bootstrap", "--user", "ann", "--organization", "Acme")
    secret = out.strip().splitlines()[-1].split(": ")[-1]
    assert api_key(secret).organization.slug == "acme"
    for line in ("organization  created  Acme (slug acme", "team          created  Default",
                 "user          reused   ann", "membership    created  ann is an admin of Acme",
                 "api key       created  ak_"):  # fmt: skip
        assert line in out, out
    out, _ = run("anyreach_bootstrap", "--user", "ann", "--organization", "Acme")
    assert "api key       reused   ak_" in out and "--new-key" in out
    assert "shown only once" not in out and secret not in out


def test_every_command_of_the_app_is_in_the_readme_operator_table() -> None:
    root = Path(__file__).resolve().parents[1]
    readme = (root / "docs" / "operations" / "commands.md").read_text()
    section = readme[readme.index("## Operator commands") :]
    section = section[: section.index("\n## ")]
    commands = root / "anyreach_listen" / "management" / "commands"
    names = sorted(p.stem for p in commands.glob("*.py") if not p.stem.startswith("_"))
    assert "anyreach_bootstrap" in names
    assert [n for n in names if f"| `manage.py {n}" not in section] == []
