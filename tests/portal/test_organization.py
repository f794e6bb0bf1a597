"""The org admin's page (``portal/organization.py``): members' roles and API keys."""

from __future__ import annotations

import re

from django.test import Client

from anyreach_listen.access.credentials import authenticate
from anyreach_listen.models import ApiKey, Membership
from tests.support.world import World, login


def test_only_org_admins_reach_it(client: Client, world: World) -> None:
    url = f"/organization/{world.org.pk}/"
    login(client, "supervisor")
    assert client.get(url).status_code == 404
    assert client.get("/organization/").status_code == 404
    assert "Organization</a>" not in client.get("/").content.decode()
    c = login(Client(), "admin")
    assert c.get("/organization/")["Location"] == url
    assert "Acme" in c.get(url).content.decode()
    assert "Organization</a>" in c.get("/").content.decode()
    assert c.get(f"/organization/{world.other_org.pk}/").status_code == 404


def test_create_key_shows_secret_once_and_revoke(client: Client, world: World) -> None:
    login(client, "admin")
    response = client.post(
        f"/organization/{world.org.pk}/keys/",
        {"name": "crm-backend", "scopes": ["conversations:read_sensitive"]},
    )
    assert "no-store" in response["Cache-Control"]
    secret = re.search(r'value="(ak_[^"]+)"', response.content.decode())
    assert secret is not None
    key = authenticate(secret.group(1))
    assert isinstance(key, ApiKey) and key.scopes == ["conversations:read_sensitive"]
    assert secret.group(1) not in client.get(f"/organization/{world.org.pk}/").content.decode()
    client.post(f"/organization/{world.org.pk}/keys/{key.pk}/revoke/")
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_change_role_and_remove_member(client: Client, world: World) -> None:
    login(client, "admin")
    viewer = Membership.objects.get(user=world.users["viewer"], organization=world.org)
    client.post(f"/organization/{world.org.pk}/members/{viewer.pk}/role/", {"role": "qa"})
    viewer.refresh_from_db()
    assert viewer.role == "qa"
    client.post(f"/organization/{world.org.pk}/members/{viewer.pk}/remove/")
    assert not Membership.objects.filter(pk=viewer.pk).exists()


def test_admin_cannot_demote_or_remove_themselves(client: Client, world: World) -> None:
    login(client, "admin")
    own = Membership.objects.get(user=world.users["admin"], organization=world.org)
    client.post(f"/organization/{world.org.pk}/members/{own.pk}/role/", {"role": "viewer"})
    client.post(f"/organization/{world.org.pk}/members/{own.pk}/remove/")
    own.refresh_from_db()
    assert own.role == "admin"


def test_other_org_rows_are_out_of_reach(client: Client, world: World) -> None:
    login(client, "admin")
    outsider = Membership.objects.get(user=world.users["outsider"])
    response = client.post(f"/organization/{world.org.pk}/members/{outsider.pk}/remove/")
    assert response.status_code == 404
    assert Membership.objects.filter(pk=outsider.pk).exists()
