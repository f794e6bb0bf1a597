"""The app's operator commands (``anyreach_listen/management/commands/``):
create_organization, create_api_key, create_pat."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError

from anyreach_listen.credentials import authenticate as authenticate_credential
from anyreach_listen.models import ApiKey, Organization
from tests.support.commands import run


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
