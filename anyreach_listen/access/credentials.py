"""API keys and personal access tokens: issuing, hashing and checking secrets.

A plaintext credential looks like ``ak_<lookup_id>_<secret>``. Only an HMAC-SHA256
of the secret (keyed by ``CREDENTIAL_HASH_KEY`` or ``SECRET_KEY``) is stored. The
lookup id finds the row; the hash is compared with ``hmac.compare_digest`` so the
comparison takes the same time whatever the guess.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.utils import timezone
from django.utils.crypto import salted_hmac

from anyreach_listen.api.errors import ErrorKind, Errors
from anyreach_listen.conf import listen_settings
from anyreach_listen.models import ApiKey, Credential, Organization, PersonalAccessToken

if TYPE_CHECKING:
    from django.contrib.auth.models import User

_CREDENTIAL_RE = re.compile(r"^(ak|pat)_([0-9a-f]{12})_([A-Za-z0-9_-]{32,128})$")
_HASH_SALT = "anyreach_listen.credentials"  # stored hashes depend on it: never follows the module
LAST_USED_GRANULARITY = dt.timedelta(minutes=1)


def hash_secret(secret: str) -> str:
    key = listen_settings.CREDENTIAL_HASH_KEY or settings.SECRET_KEY
    return salted_hmac(_HASH_SALT, secret, secret=key, algorithm="sha256").hexdigest()


def _new_parts() -> tuple[str, str]:
    return secrets.token_hex(6), secrets.token_urlsafe(32)


def _issue(credential: Credential) -> str:
    """Give ``credential`` a fresh secret, save it, return the plaintext once."""
    lookup_id, secret = _new_parts()
    credential.lookup_id = lookup_id
    credential.secret_hash = hash_secret(secret)
    credential.save()
    return f"{credential.PREFIX}_{lookup_id}_{secret}"


def issue_api_key(
    organization: Organization,
    name: str,
    scopes: Sequence[str],
    *,
    created_by: User | None = None,
    **fields: Any,
) -> tuple[ApiKey, str]:
    key = ApiKey(
        organization=organization, name=name, scopes=list(scopes), created_by=created_by, **fields
    )
    key.full_clean(exclude=["lookup_id", "secret_hash"])
    return key, _issue(key)


def issue_pat(
    user: User,
    name: str,
    scopes: Sequence[str],
    *,
    created_by: User | None = None,
    **fields: Any,
) -> tuple[PersonalAccessToken, str]:
    pat = PersonalAccessToken(
        user=user, name=name, scopes=list(scopes), created_by=created_by or user, **fields
    )
    pat.full_clean(exclude=["lookup_id", "secret_hash"])
    return pat, _issue(pat)


def rotate(credential: Credential) -> str:
    """New secret for an existing credential; the old one stops working at once."""
    return _issue(credential)


class CredentialError(Exception):
    """Why a presented credential was refused (an entry of the error registry)."""

    def __init__(self, error: ErrorKind, message: str | None = None) -> None:
        self.error = error
        self.message = message or error.message
        super().__init__(self.message)


@dataclass(frozen=True)
class Presented:
    kind: str  # "ak" or "pat"
    lookup_id: str
    secret: str


def parse(raw: str) -> Presented | None:
    match = _CREDENTIAL_RE.match(raw)
    if match is None:
        return None
    kind, lookup_id, secret = match.groups()
    return Presented(kind, lookup_id, secret)


def authenticate(raw: str) -> ApiKey | PersonalAccessToken:
    """The credential row for a plaintext secret, or ``CredentialError``."""
    presented = parse(raw)
    if presented is None:
        raise CredentialError(
            Errors.INVALID_CREDENTIALS, "The bearer token is not a valid ak_ or pat_ credential."
        )
    model: type[ApiKey] | type[PersonalAccessToken] = (
        ApiKey if presented.kind == "ak" else PersonalAccessToken
    )
    related = "organization" if model is ApiKey else "user"
    # order_by(): a unique lookup needs no ORDER BY (the model's ordering would add one).
    rows = model.objects.select_related(related).filter(lookup_id=presented.lookup_id)
    row = cast("ApiKey | PersonalAccessToken | None", next(iter(rows.order_by()), None))
    # Hash even when no row matched so both paths cost the same.
    expected = row.secret_hash if row is not None else hash_secret("")
    matches = hmac.compare_digest(expected, hash_secret(presented.secret))
    if row is None or not matches:
        raise CredentialError(Errors.INVALID_CREDENTIALS)
    if row.is_revoked:
        raise CredentialError(Errors.CREDENTIALS_REVOKED)
    if row.is_expired:
        raise CredentialError(Errors.CREDENTIALS_EXPIRED)
    if isinstance(row, PersonalAccessToken) and not row.user.is_active:
        raise CredentialError(Errors.INVALID_CREDENTIALS, "The owner of this token is inactive.")
    note_use(row)
    return row


def note_use(credential: ApiKey | PersonalAccessToken) -> None:
    """Record that ``credential`` was just used (its ``last_used_at``)."""
    now = timezone.now()
    # At most one write a minute per credential (per process, for a key kept by
    # key_cache): "last used" needs no finer grain, and minting is a hot path.
    if credential.last_used_at is None or now - credential.last_used_at > LAST_USED_GRANULARITY:
        type(credential).objects.filter(pk=credential.pk).update(last_used_at=now)
        credential.last_used_at = now
