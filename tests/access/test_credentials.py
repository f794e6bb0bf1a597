"""API keys and PATs (``credentials.py``): issuing, parsing, hashing, and every outcome
of ``authenticate``, including the at-most-once-a-minute ``last_used_at`` write."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.utils import timezone

from anyreach_listen.access import credentials
from anyreach_listen.access.credentials import (
    LAST_USED_GRANULARITY,
    CredentialError,
    Presented,
    authenticate,
    hash_secret,
    issue_api_key,
    issue_pat,
    parse,
    rotate,
)
from anyreach_listen.access.roles import Scope
from anyreach_listen.api.errors import Errors
from anyreach_listen.models import ApiKey, Organization, PersonalAccessToken
from tests.support.world import TEST_LISTEN_SETTINGS

PLAINTEXT = re.compile(r"^(ak|pat)_([0-9a-f]{12})_([A-Za-z0-9_-]{32,128})$")


@pytest.fixture
def org(db: None) -> Organization:
    return Organization.objects.create(name="Acme", slug="acme")


@pytest.fixture
def owner(db: None) -> User:
    return User.objects.create_user("owner")


# --- issuing -------------------------------------------------------------------------------


def test_issue_api_key_returns_the_plaintext_once_and_stores_only_its_hash(
    org: Organization,
) -> None:
    key, plaintext = issue_api_key(org, "backend", [Scope.READ_SENSITIVE])
    match = PLAINTEXT.match(plaintext)
    assert match is not None and match.group(1) == "ak"
    stored = ApiKey.objects.get(pk=key.pk)
    assert stored.lookup_id == match.group(2)
    assert stored.secret_hash == hash_secret(match.group(3))
    assert match.group(3) not in (stored.secret_hash, stored.lookup_id)
    assert stored.scopes == [Scope.READ_SENSITIVE]
    assert stored.organization == org
    assert stored.display_prefix == f"ak_{match.group(2)}_…"


def test_issue_pat_is_created_by_its_owner_unless_told(owner: User) -> None:
    pat, plaintext = issue_pat(owner, "cli", [Scope.READ])
    assert plaintext.startswith("pat_") and PLAINTEXT.match(plaintext)
    assert pat.created_by == owner
    admin = User.objects.create_user("admin")
    other, _ = issue_pat(owner, "by-admin", [Scope.READ], created_by=admin)
    assert other.created_by == admin


def test_every_issue_is_a_fresh_secret(org: Organization) -> None:
    secrets = {issue_api_key(org, f"k{i}", [Scope.READ])[1] for i in range(5)}
    assert len(secrets) == 5
    assert len({parse(s).lookup_id for s in secrets if parse(s)}) == 5  # type: ignore[union-attr]


@pytest.mark.parametrize("scopes", [["root"], ["conversations:read", "conversations:everything"]])
def test_unknown_scopes_are_refused_before_anything_is_stored(
    org: Organization, owner: User, scopes: list[str]
) -> None:
    with pytest.raises(ValidationError, match="Unknown scopes"):
        issue_api_key(org, "bad", scopes)
    with pytest.raises(ValidationError, match="Unknown scopes"):
        issue_pat(owner, "bad", scopes)
    assert not ApiKey.objects.exists() and not PersonalAccessToken.objects.exists()


def test_rotate_replaces_the_secret_at_once(org: Organization) -> None:
    key, old = issue_api_key(org, "backend", [Scope.MANAGE])
    new = rotate(key)
    assert new != old and new.startswith("ak_")
    assert authenticate(new).pk == key.pk
    with pytest.raises(CredentialError) as refused:
        authenticate(old)
    assert refused.value.error is Errors.INVALID_CREDENTIALS


# --- parsing -------------------------------------------------------------------------------

SECRET = "s" * 43


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (f"ak_0123456789ab_{SECRET}", Presented("ak", "0123456789ab", SECRET)),
        (f"pat_0123456789ab_{SECRET}", Presented("pat", "0123456789ab", SECRET)),
        (f"ak_0123456789ab_{'-_' * 16}", Presented("ak", "0123456789ab", "-_" * 16)),
        (f"ak_0123456789ab_{'x' * 128}", Presented("ak", "0123456789ab", "x" * 128)),
        (f"ak_0123456789ab_{'x' * 31}", None),  # secret too short
        (f"ak_0123456789ab_{'x' * 129}", None),  # secret too long
        (f"ak_0123456789AB_{SECRET}", None),  # lookup id is lower-case hex
        (f"ak_0123456789a_{SECRET}", None),  # lookup id is 12 characters
        (f"sk_0123456789ab_{SECRET}", None),  # unknown prefix
        (f"Bearer ak_0123456789ab_{SECRET}", None),  # the header, not the token
        (f"ak_0123456789ab_{SECRET} ", None),
        (f"ak_0123456789ab_{SECRET[:-1]}=", None),  # not URL-safe base64
        ("", None),
    ],
)
def test_parse(raw: str, expected: Presented | None) -> None:
    assert parse(raw) == expected


# --- hashing -------------------------------------------------------------------------------


def test_hash_is_a_keyed_hex_sha256_and_stable(settings: Any) -> None:
    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, "CREDENTIAL_HASH_KEY": "k" * 40}
    digest = hash_secret("abc")
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert hash_secret("abc") == digest
    assert hash_secret("abd") != digest


def test_hash_key_comes_from_credential_hash_key_else_secret_key(settings: Any) -> None:
    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, "CREDENTIAL_HASH_KEY": "k" * 40}
    keyed = hash_secret("abc")
    settings.SECRET_KEY = "another-secret-key-" + "x" * 40
    assert hash_secret("abc") == keyed  # SECRET_KEY plays no part when a hash key is set
    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, "CREDENTIAL_HASH_KEY": "j" * 40}
    assert hash_secret("abc") != keyed
    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, "CREDENTIAL_HASH_KEY": ""}
    derived = hash_secret("abc")
    assert derived != keyed
    settings.SECRET_KEY = "a-third-secret-key-" + "x" * 40
    assert hash_secret("abc") != derived  # derived from SECRET_KEY


# --- authenticate: every outcome -----------------------------------------------------------


def _api_key(org: Organization, **fields: Any) -> str:
    return issue_api_key(org, "k", [Scope.READ_SENSITIVE], **fields)[1]


def _pat(owner: User, **fields: Any) -> str:
    return issue_pat(owner, "p", [Scope.READ], **fields)[1]


def _wrong_secret(plaintext: str) -> str:
    kind, lookup_id, _ = plaintext.split("_", 2)  # the secret itself may contain "_"
    return f"{kind}_{lookup_id}_{'A' * 43}"


def _unknown_lookup(plaintext: str) -> str:
    kind, _, secret = plaintext.split("_", 2)
    return f"{kind}_ffffffffffff_{secret}"


def _as_other_kind(plaintext: str) -> str:
    kind, rest = plaintext.split("_", 1)
    return f"{'pat' if kind == 'ak' else 'ak'}_{rest}"


PAST = dt.timedelta(seconds=-1)
FUTURE = dt.timedelta(days=1)

# (credential kind, how it is made, what is presented, expected error or None for success)
OUTCOMES: list[tuple[str, dict[str, Any], Callable[[str], str], Any]] = [
    ("ak", {}, lambda s: s, None),
    ("pat", {}, lambda s: s, None),
    ("ak", {"expires_in": FUTURE}, lambda s: s, None),
    ("pat", {"expires_in": FUTURE}, lambda s: s, None),
    ("ak", {}, _unknown_lookup, Errors.INVALID_CREDENTIALS),
    ("pat", {}, _unknown_lookup, Errors.INVALID_CREDENTIALS),
    ("ak", {}, _wrong_secret, Errors.INVALID_CREDENTIALS),
    ("pat", {}, _wrong_secret, Errors.INVALID_CREDENTIALS),
    ("ak", {}, _as_other_kind, Errors.INVALID_CREDENTIALS),
    ("pat", {}, _as_other_kind, Errors.INVALID_CREDENTIALS),
    ("ak", {}, lambda s: s[:-1], Errors.INVALID_CREDENTIALS),  # truncated: still parses
    ("ak", {}, lambda s: "garbage", Errors.INVALID_CREDENTIALS),
    ("ak", {"revoked": True}, lambda s: s, Errors.CREDENTIALS_REVOKED),
    ("pat", {"revoked": True}, lambda s: s, Errors.CREDENTIALS_REVOKED),
    ("ak", {"expires_in": PAST}, lambda s: s, Errors.CREDENTIALS_EXPIRED),
    ("pat", {"expires_in": PAST}, lambda s: s, Errors.CREDENTIALS_EXPIRED),
    # Revoked wins over expired; a wrong secret reveals neither.
    ("ak", {"revoked": True, "expires_in": PAST}, lambda s: s, Errors.CREDENTIALS_REVOKED),
    ("ak", {"revoked": True}, _wrong_secret, Errors.INVALID_CREDENTIALS),
    ("pat", {"expires_in": PAST}, _wrong_secret, Errors.INVALID_CREDENTIALS),
    ("pat", {"inactive_owner": True}, lambda s: s, Errors.INVALID_CREDENTIALS),
    ("pat", {"inactive_owner": True}, _wrong_secret, Errors.INVALID_CREDENTIALS),
]


@pytest.mark.parametrize(("kind", "made", "presented", "error"), OUTCOMES)
def test_authenticate_outcomes(
    org: Organization,
    owner: User,
    kind: str,
    made: dict[str, Any],
    presented: Callable[[str], str],
    error: Any,
) -> None:
    fields: dict[str, Any] = {}
    if "expires_in" in made:
        fields["expires_at"] = timezone.now() + made["expires_in"]
    if made.get("revoked"):
        fields["revoked_at"] = timezone.now()
    if made.get("inactive_owner"):
        owner.is_active = False
        owner.save()
    plaintext = _api_key(org, **fields) if kind == "ak" else _pat(owner, **fields)

    if error is None:
        row = authenticate(presented(plaintext))
        assert isinstance(row, ApiKey if kind == "ak" else PersonalAccessToken)
        assert row.lookup_id == parse(plaintext).lookup_id  # type: ignore[union-attr]
        return
    with pytest.raises(CredentialError) as refused:
        authenticate(presented(plaintext))
    assert refused.value.error is error
    assert refused.value.message


def test_inactive_owner_and_malformed_tokens_say_why(owner: User) -> None:
    plaintext = _pat(owner)
    owner.is_active = False
    owner.save()
    with pytest.raises(CredentialError, match="owner of this token is inactive"):
        authenticate(plaintext)
    with pytest.raises(CredentialError, match="not a valid ak_ or pat_ credential"):
        authenticate("not-a-token")


def test_the_secret_is_hashed_even_when_no_row_matches(
    org: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = _api_key(org)
    hashed: list[str] = []
    original = credentials.hash_secret

    def counting(secret: str) -> str:
        hashed.append(secret)
        return original(secret)

    monkeypatch.setattr(credentials, "hash_secret", counting)
    with pytest.raises(CredentialError):
        authenticate(_unknown_lookup(real))
    unknown = list(hashed)
    hashed.clear()
    with pytest.raises(CredentialError):
        authenticate(_wrong_secret(real))
    # Both paths hash the presented secret; the unknown one hashes a dummy too.
    assert parse(real).secret in unknown  # type: ignore[union-attr]
    assert "A" * 43 in hashed
    assert len(unknown) == 2 and len(hashed) == 1


# --- last_used_at: at most one write a minute ----------------------------------------------


def _last_used(model: type[ApiKey | PersonalAccessToken], plaintext: str) -> Any:
    return model.objects.get(lookup_id=parse(plaintext).lookup_id).last_used_at  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["ak", "pat"])
def test_last_used_is_written_at_most_once_a_minute(
    org: Organization,
    owner: User,
    kind: str,
    django_assert_num_queries: Callable[..., Any],
) -> None:
    model: type[ApiKey] | type[PersonalAccessToken] = (
        ApiKey if kind == "ak" else PersonalAccessToken
    )
    plaintext = _api_key(org) if kind == "ak" else _pat(owner)
    assert _last_used(model, plaintext) is None

    with django_assert_num_queries(2):  # the lookup, then the write
        authenticate(plaintext)
    first = _last_used(model, plaintext)
    assert first is not None and timezone.now() - first < dt.timedelta(seconds=5)

    with django_assert_num_queries(1):  # within the minute: the lookup only
        authenticate(plaintext)
    assert _last_used(model, plaintext) == first

    just_inside = timezone.now() - LAST_USED_GRANULARITY + dt.timedelta(seconds=5)
    model.objects.filter(pk=authenticate(plaintext).pk).update(last_used_at=just_inside)
    with django_assert_num_queries(1):
        authenticate(plaintext)
    assert _last_used(model, plaintext) == just_inside

    stale = timezone.now() - LAST_USED_GRANULARITY - dt.timedelta(seconds=1)
    model.objects.filter(last_used_at=just_inside).update(last_used_at=stale)
    with django_assert_num_queries(2):
        authenticate(plaintext)
    assert _last_used(model, plaintext) > stale


def test_refused_credentials_do_not_touch_last_used(org: Organization) -> None:
    plaintext = _api_key(org, revoked_at=timezone.now())
    with pytest.raises(CredentialError):
        authenticate(plaintext)
    with pytest.raises(CredentialError):
        authenticate(_wrong_secret(plaintext))
    assert _last_used(ApiKey, plaintext) is None


def test_granularity_is_a_minute() -> None:
    assert dt.timedelta(minutes=1) == LAST_USED_GRANULARITY
