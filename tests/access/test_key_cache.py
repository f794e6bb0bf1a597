"""``access/key_cache.py``: the token endpoint skips the credential lookup for an API key
it checked before, and answers exactly as a fresh lookup would once the key changed,
whichever process changed it."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from anyreach_listen.access import key_cache
from anyreach_listen.access.credentials import parse, rotate
from anyreach_listen.access.roles import Role, Scope
from anyreach_listen.models import ApiKey, ListenSession, Membership, Organization
from tests.support.world import World

URL = "/core/conversations/{}/listener-token"
KEY = "ak_read_sensitive"


def mint(client: Client, world: World, secret: str, org: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {secret}"}
    if org is not None:
        headers["X-Anyreach-Org"] = org
    return client.post(URL.format(world.conversations["in_progress"].pk), headers=headers)


def the_key(world: World) -> ApiKey:
    presented = parse(world.secrets[KEY])
    assert presented is not None
    return ApiKey.objects.get(lookup_id=presented.lookup_id)


def credential_lookups(queries: CaptureQueriesContext) -> int:
    """The requests' credential lookups: a credential read by its lookup id."""
    return sum(1 for q in queries.captured_queries if '"lookup_id" =' in str(q["sql"]))


def as_if_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on a change reaches this process as another process's does: in the
    database only, with no signal here to drop a kept key."""
    monkeypatch.setattr(key_cache, "forget_key", lambda key_id: None)
    monkeypatch.setattr(key_cache, "forget_organization", lambda organization_id: None)


@pytest.fixture
def elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    as_if_elsewhere(monkeypatch)


def test_a_kept_key_is_not_read_again(client: Client, world: World) -> None:
    with CaptureQueriesContext(connection) as first:
        assert mint(client, world, world.secrets[KEY]).status_code == 200
    with CaptureQueriesContext(connection) as second:
        assert mint(client, world, world.secrets[KEY]).status_code == 200
    assert (credential_lookups(first), credential_lookups(second)) == (1, 0)
    assert ListenSession.objects.filter(api_key=the_key(world)).count() == 2


def test_a_wrong_secret_for_a_kept_key_is_refused_and_counted(client: Client, world: World) -> None:
    assert mint(client, world, world.secrets[KEY]).status_code == 200
    wrong = world.secrets[KEY][:-4] + "AAAA"
    response = mint(client, world, wrong)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"


def _revoke(world: World, key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())


def _expire(world: World, key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))


def _delete(world: World, key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk).delete()


def _rotate(world: World, key: ApiKey) -> None:
    rotate(key)


def _take_listening_away(world: World, key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk).update(scopes=[Scope.READ])


def _move(world: World, key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk).update(organization=world.other_org)


# The change, made after the key was kept, and what the very next mint answers.
CHANGES: dict[str, tuple[Callable[[World, ApiKey], None], int, str]] = {
    "revoked": (_revoke, 401, "credentials_revoked"),
    "expired": (_expire, 401, "credentials_expired"),
    "deleted": (_delete, 401, "invalid_credentials"),
    "rotated": (_rotate, 401, "invalid_credentials"),
    "listening taken away": (_take_listening_away, 403, "insufficient_scope"),
    "moved to another organization": (_move, 404, "conversation_not_found"),
}


@pytest.mark.parametrize("in_this_process", [True, False], ids=["here", "elsewhere"])
@pytest.mark.parametrize("change", CHANGES)
def test_a_changed_key_is_answered_as_a_fresh_lookup_would(
    client: Client,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    change: str,
    in_this_process: bool,
) -> None:
    apply, status, code = CHANGES[change]
    assert mint(client, world, world.secrets[KEY]).status_code == 200  # kept now
    if not in_this_process:
        as_if_elsewhere(monkeypatch)
    apply(world, the_key(world))
    response = mint(client, world, world.secrets[KEY])
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert ListenSession.objects.filter(credential_label__contains="rs (").count() == 1
    key_cache.clear()  # a process that never kept it answers the same
    fresh = mint(client, world, world.secrets[KEY])
    assert (fresh.status_code, fresh.json()["error"]["code"]) == (status, code)


def test_a_rename_elsewhere_is_audited_under_the_new_name(
    client: Client, world: World, elsewhere: None
) -> None:
    assert mint(client, world, world.secrets[KEY]).status_code == 200
    ApiKey.objects.filter(name="rs").update(name="renamed")
    assert mint(client, world, world.secrets[KEY]).status_code == 200
    latest = ListenSession.objects.order_by("-minted_at").first()
    assert latest is not None and latest.credential_label.startswith("API key renamed (")


def test_embed_origins_changed_elsewhere_reach_the_next_token(
    client: Client, world: World, elsewhere: None
) -> None:
    assert mint(client, world, world.secrets[KEY]).status_code == 200
    origins = ["https://new.example"]
    Organization.objects.filter(pk=world.org.pk).update(allowed_embed_origins=origins)
    response = mint(client, world, world.secrets[KEY])
    assert response.status_code == 200
    claims = jwt.decode(response.json()["token"], options={"verify_signature": False})
    assert json.loads(claims["metadata"])["embed_origins"] == origins


def test_a_request_of_a_changed_key_counts_once_against_its_rate_limit(
    client: Client, world: World, elsewhere: None, settings: Any
) -> None:
    settings.ANYREACH_LISTEN = {**settings.ANYREACH_LISTEN, "RATE_LIMIT_REQUESTS": 2}
    assert mint(client, world, world.secrets[KEY]).status_code == 200
    ApiKey.objects.filter(name="rs").update(name="renamed")  # the kept key is stale
    assert mint(client, world, world.secrets[KEY]).status_code == 200  # counted once
    assert mint(client, world, world.secrets[KEY]).status_code == 429


def test_a_change_in_this_process_drops_the_kept_key_at_once(client: Client, world: World) -> None:
    assert mint(client, world, world.secrets[KEY]).status_code == 200
    key = the_key(world)
    key.name = "renamed"
    key.save()
    with CaptureQueriesContext(connection) as queries:
        assert mint(client, world, world.secrets[KEY]).status_code == 200
    assert credential_lookups(queries) == 1


def test_a_pat_is_never_kept_and_its_owners_new_role_counts_at_once(
    client: Client, world: World
) -> None:
    org = str(world.org.pk)
    secret = world.secrets["pat_supervisor"]
    assert mint(client, world, secret, org).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert mint(client, world, secret, org).status_code == 200
    assert credential_lookups(queries) == 1
    Membership.objects.filter(user=world.users["supervisor"]).update(role=Role.VIEWER)
    response = mint(client, world, secret, org)
    assert (response.status_code, response.json()["error"]["code"]) == (
        403,
        "insufficient_scope",
    )
