"""Operator commands: seed_demo, create_organization, create_api_key, create_pat."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client

from anyreach_listen.credentials import CredentialError
from anyreach_listen.credentials import authenticate as authenticate_credential
from anyreach_listen.models import ApiKey, Conversation, Organization

URL = "/core/conversations/{}/listener-token"


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


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
