"""The demo's commands (``demo/management/commands/``): seed_demo, and simulate_call's
failure modes that need no LiveKit (the real call runs in ``tests/e2e/``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.test import Client

from anyreach_listen.access.credentials import CredentialError
from anyreach_listen.access.credentials import authenticate as authenticate_credential
from anyreach_listen.models import ApiKey, Conversation, Organization
from tests.support.commands import run

URL = "/core/conversations/{}/listener-token"


def seed_json() -> dict[str, Any]:
    out, _ = run("seed_demo", "--json")
    assert out.count("\n") <= 1  # exactly one JSON object, nothing else on stdout
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.mark.django_db
def test_seed_demo_json_shape_and_working_secrets(client: Client) -> None:
    seed = seed_json()
    assert set(seed) == {"organization_id", "team_id", "users", "api_keys", "pat", "conversations"}
    assert set(seed["users"]) == {"admin", "supervisor", "qa", "viewer"}
    for login in seed["users"].values():
        assert authenticate(username=login["username"], password=login["password"])
    assert set(seed["api_keys"]) == {"read_sensitive", "manage", "no_scope"}
    assert all(k.startswith("ak_") for k in seed["api_keys"].values())
    assert seed["pat"].startswith("pat_")
    assert set(seed["conversations"]) == {"active", "no_room", "completed"}

    def mint(conversation: str, key: str, org: str | None = None) -> int:
        headers = {"Authorization": f"Bearer {key}"}
        if org:
            headers["X-Anyreach-Org"] = org
        return client.post(
            URL.format(seed["conversations"][conversation]), headers=headers
        ).status_code

    assert mint("active", seed["api_keys"]["read_sensitive"]) == 200
    assert mint("active", seed["api_keys"]["manage"]) == 200
    assert mint("active", seed["api_keys"]["no_scope"]) == 403
    assert mint("active", seed["pat"], seed["organization_id"]) == 200
    assert mint("no_room", seed["api_keys"]["manage"]) == 404
    assert mint("completed", seed["api_keys"]["manage"]) == 409


@pytest.mark.django_db
def test_seed_demo_is_idempotent_and_rotates_secrets() -> None:
    first, second = seed_json(), seed_json()
    assert first["organization_id"] == second["organization_id"]
    assert first["team_id"] == second["team_id"]
    assert first["conversations"] == second["conversations"]
    assert Organization.objects.count() == 1
    assert Conversation.objects.count() == 3
    assert ApiKey.objects.count() == 3
    authenticate_credential(second["api_keys"]["manage"])
    with pytest.raises(CredentialError):
        authenticate_credential(first["api_keys"]["manage"])
    assert authenticate(**second["users"]["viewer"])


@pytest.mark.django_db
def test_seed_demo_human_output_lists_logins() -> None:
    out, _ = run("seed_demo")
    assert "demo-supervisor" in out and "ak_" in out


def test_simulate_call_needs_the_demo_organization(db: None) -> None:
    with pytest.raises(CommandError, match=r"'demo'.*seed_demo"):
        call_command("simulate_call", "--json")


def test_simulate_call_rejects_an_unknown_team(db: None) -> None:
    from anyreach_listen.models import Organization

    Organization.objects.create(name="Demo", slug="demo")
    with pytest.raises(CommandError, match="No team 'Nope'"):
        call_command("simulate_call", "--team", "Nope")


def test_simulate_call_without_an_api_key_says_how_to_get_one(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anyreach_listen.models import Organization

    monkeypatch.delenv("ANYREACH_API_KEY", raising=False)
    Organization.objects.create(name="Demo", slug="demo")
    with pytest.raises(CommandError, match=r"--api-key.*ANYREACH_API_KEY.*room-metadata"):
        call_command("simulate_call", "--api-key", "")


@pytest.mark.django_db
def test_seed_demo_reuses_its_live_call_after_the_webhooks_or_the_sweep_changed_it() -> None:
    # room_started adds the room's sid to the metadata; the sweep may have ended the call
    # (room_gone) while no demo ran. The next seed brings the same row back, live.
    first = seed_json()["conversations"]["active"]
    Conversation.objects.filter(pk=first).update(
        status="failed",
        metadata={"seed": "active", "livekit_room_sid": "RM_x", "ended_by": "room_gone"},
    )
    assert seed_json()["conversations"]["active"] == first
    call = Conversation.objects.get(pk=first)
    assert (call.status, call.metadata, call.ended_at) == ("in_progress", {"seed": "active"}, None)
    assert Conversation.objects.count() == 3
