"""Failed bearer credentials per client address (``access.for_api_request`` with
``ratelimit.py``), through the real API endpoints and the Django test client.

After FAILED_AUTH_LIMIT refused credentials from one address within a window,
every API request from that address is answered 429 ``rate_limited`` before any
credential is looked up, until the window ends. Good requests never count.
"""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from anyreach_listen.access import ratelimit
from anyreach_listen.access.credentials import issue_api_key, issue_pat, parse
from anyreach_listen.access.roles import Scope
from anyreach_listen.api.openapi import build_document
from anyreach_listen.models import ApiKey, PersonalAccessToken
from tests.support.world import TEST_LISTEN_SETTINGS, World

LIMIT = 3
WINDOW = 300
START = 1_800_000_000 // WINDOW * WINDOW  # the first second of a window
ATTACKER = "203.0.113.7"
NEIGHBOUR = "203.0.113.8"
ERROR_SCHEMA = build_document()["components"]["schemas"]["Error"]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Clock:
    settings.ANYREACH_LISTEN = {
        **TEST_LISTEN_SETTINGS,
        "FAILED_AUTH_LIMIT": LIMIT,
        "FAILED_AUTH_WINDOW": WINDOW,
    }
    fake = Clock(START + 100)
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=fake.time))
    return fake


def mint(
    client: Client,
    world: World,
    authorization: str | None,
    address: str = ATTACKER,
    org: str | None = None,
) -> Any:
    headers = {"Authorization": authorization} if authorization is not None else {}
    if org is not None:
        headers["X-Anyreach-Org"] = org
    url = f"/core/conversations/{world.conversations['in_progress'].pk}/listener-token"
    return client.post(url, headers=headers, REMOTE_ADDR=address)


def listing(client: Client, authorization: str, address: str = ATTACKER) -> Any:
    return client.get(
        "/core/conversations", headers={"Authorization": authorization}, REMOTE_ADDR=address
    )


def bearer(secret: str) -> str:
    return f"Bearer {secret}"


def unknown_key(world: World) -> str:
    """A well-formed ``ak_`` credential with a lookup id no row has."""
    return bearer("ak_000000000000_" + "x" * 43)


def assert_limited(response: Any, retry_after: int) -> None:
    from openapi_schema_validator import OAS31Validator

    assert response.status_code == 429, response.content
    body = response.json()
    OAS31Validator(ERROR_SCHEMA).validate(body)
    assert body["error"]["code"] == "rate_limited"
    assert "failed credentials from this address" in body["error"]["message"]
    assert response["Retry-After"] == str(retry_after)


def fail(client: Client, world: World, times: int, address: str = ATTACKER) -> None:
    for _ in range(times):
        assert mint(client, world, unknown_key(world), address).status_code == 401


def _revoked(world: World) -> str:
    key, secret = issue_api_key(world.org, "revoked", [Scope.READ_SENSITIVE])
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    return bearer(secret)


def _expired(world: World) -> str:
    past = timezone.now() - dt.timedelta(minutes=1)
    return bearer(issue_api_key(world.org, "old", [Scope.READ_SENSITIVE], expires_at=past)[1])


def _inactive_owner(world: World) -> str:
    user = User.objects.create_user("gone", is_active=False)
    return bearer(issue_pat(user, "gone", [Scope.READ])[1])


def _wrong_secret(world: World) -> str:
    presented = parse(world.secrets["ak_read_sensitive"])
    assert presented is not None
    return bearer(f"ak_{presented.lookup_id}_" + "y" * 43)


BAD_CREDENTIALS = {
    "unknown": (unknown_key, "invalid_credentials"),
    "wrong secret of a real key": (_wrong_secret, "invalid_credentials"),
    "not a credential": (lambda w: "Bearer hunter2", "invalid_credentials"),
    "another scheme": (lambda w: "Basic cm9vdDpwdw==", "invalid_credentials"),
    "empty bearer": (lambda w: "Bearer ", "invalid_credentials"),
    "revoked": (_revoked, "credentials_revoked"),
    "expired": (_expired, "credentials_expired"),
    "PAT of an inactive user": (_inactive_owner, "invalid_credentials"),
}


def test_the_attempt_after_the_limit_is_429_even_with_a_good_key(
    client: Client, world: World, clock: Clock, django_assert_num_queries: Any
) -> None:
    fail(client, world, LIMIT)
    good = bearer(world.secrets["ak_read_sensitive"])
    # Refused before the credential is looked up: no query at all.
    with django_assert_num_queries(0):
        response = mint(client, world, good)
    assert_limited(response, retry_after=WINDOW - 100)
    # The 429s are not failures of their own, and the block holds for the whole window.
    clock.now = START + WINDOW - 1
    assert_limited(mint(client, world, good), retry_after=1)
    assert_limited(mint(client, world, None), retry_after=1)


def test_the_block_ends_with_the_window(client: Client, world: World, clock: Clock) -> None:
    fail(client, world, LIMIT)
    assert mint(client, world, unknown_key(world)).status_code == 429
    clock.now = START + WINDOW  # the next window
    assert mint(client, world, bearer(world.secrets["ak_read_sensitive"])).status_code == 200
    # It counts from zero again.
    fail(client, world, LIMIT)
    assert mint(client, world, bearer(world.secrets["ak_read_sensitive"])).status_code == 429


@pytest.mark.parametrize("kind", list(BAD_CREDENTIALS))
def test_every_refused_bearer_credential_counts(
    client: Client, world: World, clock: Clock, kind: str
) -> None:
    make, code = BAD_CREDENTIALS[kind]
    bad = make(world)
    for _ in range(LIMIT):
        response = mint(client, world, bad)
        assert response.status_code == 401 and response.json()["error"]["code"] == code
    assert_limited(mint(client, world, bad), retry_after=WINDOW - 100)


def test_another_address_is_unaffected(client: Client, world: World, clock: Clock) -> None:
    fail(client, world, LIMIT)
    good = bearer(world.secrets["ak_read_sensitive"])
    assert mint(client, world, good).status_code == 429
    assert mint(client, world, good, address=NEIGHBOUR).status_code == 200
    # The neighbour's own failures start from zero.
    fail(client, world, LIMIT - 1, address=NEIGHBOUR)
    assert mint(client, world, good, address=NEIGHBOUR).status_code == 200


def test_an_ipv6_client_is_counted_by_its_64_network(
    client: Client, world: World, clock: Clock
) -> None:
    for host in range(1, LIMIT + 1):  # a new address of the same /64 each time
        assert mint(client, world, unknown_key(world), f"2001:db8:1:2::{host}").status_code == 401
    good = bearer(world.secrets["ak_read_sensitive"])
    assert mint(client, world, good, "2001:db8:1:2:ffff::1").status_code == 429
    assert mint(client, world, good, "2001:db8:1:3::1").status_code == 200


def test_good_requests_never_count(client: Client, world: World, clock: Clock) -> None:
    good = bearer(world.secrets["ak_read_sensitive"])
    for _ in range(LIMIT * 3):
        assert mint(client, world, good).status_code == 200
        assert listing(client, good).status_code == 200
    assert mint(client, world, unknown_key(world)).status_code == 401
    assert mint(client, world, good).status_code == 200


def test_refusals_of_a_good_credential_do_not_count(
    client: Client, world: World, clock: Clock
) -> None:
    # A valid credential refused for what it asks (scope, organization, missing header)
    # guesses no secret; nor does a request without any Authorization header.
    other = str(world.other_org.pk)
    refusals = [
        (bearer(world.secrets["ak_no_scope"]), None, "insufficient_scope"),
        (bearer(world.secrets["ak_read_sensitive"]), other, "organization_mismatch"),
        (bearer(world.secrets["pat_qa"]), None, "missing_organization"),
        (bearer(world.secrets["pat_qa"]), other, "not_a_member"),
        (None, None, "missing_credentials"),
    ]
    for authorization, org, code in refusals * LIMIT:
        response = mint(client, world, authorization, org=org)
        assert response.json()["error"]["code"] == code
    assert mint(client, world, bearer(world.secrets["ak_read_sensitive"])).status_code == 200


def test_the_count_spans_the_token_and_conversations_endpoints(
    client: Client, world: World, clock: Clock
) -> None:
    conversation = world.conversations["in_progress"]
    bad = unknown_key(world)
    # One failure on each of three endpoints...
    assert listing(client, bad).status_code == 401
    detail = client.patch(
        f"/core/conversations/{conversation.pk}",
        data=json.dumps({"caller_label": "x"}),
        content_type="application/json",
        headers={"Authorization": bad},
        REMOTE_ADDR=ATTACKER,
    )
    assert detail.status_code == 401
    assert mint(client, world, bad).status_code == 401
    # ...blocks every endpoint, whichever credential comes next.
    good = bearer(world.secrets["ak_manage"])
    assert_limited(listing(client, good), retry_after=WINDOW - 100)
    assert_limited(mint(client, world, good), retry_after=WINDOW - 100)
    created = client.post(
        "/core/conversations",
        data="{}",
        content_type="application/json",
        headers={"Authorization": good},
        REMOTE_ADDR=ATTACKER,
    )
    assert_limited(created, retry_after=WINDOW - 100)
    got = client.get(
        f"/core/conversations/{conversation.pk}",
        headers={"Authorization": good},
        REMOTE_ADDR=ATTACKER,
    )
    assert_limited(got, retry_after=WINDOW - 100)


def test_the_per_credential_limit_still_holds_and_does_not_block_the_address(
    client: Client, world: World, clock: Clock, settings: Any
) -> None:
    settings.ANYREACH_LISTEN = {**settings.ANYREACH_LISTEN, "RATE_LIMIT_REQUESTS": 2}
    first = bearer(world.secrets["ak_read_sensitive"])
    assert [mint(client, world, first).status_code for _ in range(3 + LIMIT)] == [200, 200] + [
        429
    ] * (1 + LIMIT)
    over = mint(client, world, first)
    assert "requests for this credential" in over.json()["error"]["message"]
    # Those 429s were not failed credentials: another key from the same address mints.
    assert mint(client, world, bearer(world.secrets["ak_manage"])).status_code == 200


def test_the_default_limit_is_in_the_settings(client: Client, world: World) -> None:
    from anyreach_listen.conf import DEFAULTS

    limit = DEFAULTS["FAILED_AUTH_LIMIT"]
    fail(client, world, limit)
    response = mint(client, world, bearer(world.secrets["ak_read_sensitive"]))
    assert response.status_code == 429 and response.json()["error"]["code"] == "rate_limited"


def test_a_pat_counts_like_a_key(client: Client, world: World, clock: Clock) -> None:
    presented = parse(world.secrets["pat_supervisor"])
    assert presented is not None
    wrong = bearer(f"pat_{presented.lookup_id}_" + "z" * 43)
    org = str(world.org.pk)
    for _ in range(LIMIT):
        assert mint(client, world, wrong, org=org).status_code == 401
    good = mint(client, world, bearer(world.secrets["pat_supervisor"]), org=org)
    assert_limited(good, retry_after=WINDOW - 100)
    pat = PersonalAccessToken.objects.get(lookup_id=presented.lookup_id)
    assert pat.last_used_at is None  # never looked up
