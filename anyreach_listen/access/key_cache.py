"""API keys this process checked recently, kept for the listener-token endpoint so its
mint skips the credential lookup. Safe in any number of processes because each mint's
locked re-check must find the key's row as it was kept (``confirm``), else ``Stale``
and the request is checked again (docs/internals/api-and-access.md says how)."""

from __future__ import annotations

import datetime as dt
import hmac
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from anyreach_listen.access import credentials
from anyreach_listen.models import ApiKey, Organization, PersonalAccessToken

TTL = 60.0  # seconds a checked key is kept
MAX_KEYS = 1024  # kept keys per process, least recently used dropped first


class Stale(Exception):
    """A kept key's row changed since it was checked: check the request again."""


@dataclass(frozen=True)
class KeyRow:
    """What a request takes from an API key's row and its organization's."""

    revoked_at: dt.datetime | None
    expires_at: dt.datetime | None
    organization_id: uuid.UUID
    scopes: list[str]
    secret_hash: str
    name: str
    embed_origins: list[str]

    # The columns, in the fields' order, for a values_list() from ApiKey: first the four
    # every API mint's re-check reads (entitlement.API_KEY_COLUMNS), then the rest.
    COLUMNS = (
        "revoked_at",
        "expires_at",
        "organization_id",
        "scopes",
        "secret_hash",
        "name",
        "organization__allowed_embed_origins",
    )

    @classmethod
    def of(cls, key: ApiKey) -> KeyRow:
        organization = key.organization
        return cls(
            key.revoked_at,
            key.expires_at,
            key.organization_id,
            list(key.scopes),
            key.secret_hash,
            key.name,
            list(organization.allowed_embed_origins),
        )


def confirm(kept: KeyRow, values: tuple[Any, ...] | None) -> None:
    """``Stale`` unless ``values`` (``KeyRow.COLUMNS`` as read now; None: the row is
    gone) are the row ``kept`` was checked as."""
    if values is None or KeyRow(*values) != kept:
        forget_hash(kept.secret_hash)
        raise Stale


@dataclass
class _Kept:
    key: ApiKey
    row: KeyRow
    checked_at: float  # time.monotonic()


_lock = threading.Lock()
_kept: OrderedDict[str, _Kept] = OrderedDict()  # by lookup id


def authenticate(raw: str) -> tuple[ApiKey | PersonalAccessToken, KeyRow | None]:
    """``credentials.authenticate``, or a key kept from an earlier check: the credential
    and, when it was kept, the row the mint must confirm (``confirm``)."""
    presented = credentials.parse(raw)
    if presented is not None and presented.kind == "ak":
        kept = _recall(presented)
        if kept is not None:
            credentials.note_use(kept.key)
            return kept.key, kept.row
    credential = credentials.authenticate(raw)
    if isinstance(credential, ApiKey):
        _remember(credential)
    return credential, None


def _recall(presented: credentials.Presented) -> _Kept | None:
    with _lock:
        kept = _kept.get(presented.lookup_id)
        if kept is None:
            return None
        if time.monotonic() - kept.checked_at > TTL:
            del _kept[presented.lookup_id]
            return None
        _kept.move_to_end(presented.lookup_id)
    # A wrong secret, or a key revoked or expired since: the database path answers.
    matches = hmac.compare_digest(kept.row.secret_hash, credentials.hash_secret(presented.secret))
    if not matches or kept.key.is_revoked or kept.key.is_expired:
        return None
    return kept


def _remember(key: ApiKey) -> None:
    kept = _Kept(key, KeyRow.of(key), time.monotonic())
    with _lock:
        _kept[key.lookup_id] = kept
        _kept.move_to_end(key.lookup_id)
        while len(_kept) > MAX_KEYS:
            _kept.popitem(last=False)


def forget_hash(secret_hash: str) -> None:
    with _lock:
        for lookup_id in [i for i, k in _kept.items() if k.row.secret_hash == secret_hash]:
            del _kept[lookup_id]


def forget_key(key_id: uuid.UUID) -> None:
    with _lock:
        for lookup_id in [i for i, k in _kept.items() if k.key.pk == key_id]:
            del _kept[lookup_id]


def forget_organization(organization_id: uuid.UUID) -> None:
    with _lock:
        for lookup_id in [i for i, k in _kept.items() if k.row.organization_id == organization_id]:
            del _kept[lookup_id]


def clear() -> None:
    with _lock:
        _kept.clear()


# This process's own changes take effect at once, without waiting for a Stale mint.
@receiver(post_save, sender=ApiKey, dispatch_uid="anyreach_listen.key_cache.key_saved")
@receiver(post_delete, sender=ApiKey, dispatch_uid="anyreach_listen.key_cache.key_deleted")
def _key_changed(sender: type[ApiKey], instance: ApiKey, **kwargs: Any) -> None:
    forget_key(instance.pk)


@receiver(post_save, sender=Organization, dispatch_uid="anyreach_listen.key_cache.org_saved")
@receiver(post_delete, sender=Organization, dispatch_uid="anyreach_listen.key_cache.org_deleted")
def _organization_changed(
    sender: type[Organization], instance: Organization, **kwargs: Any
) -> None:
    forget_organization(instance.pk)
