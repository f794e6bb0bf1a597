"""Disclosure: who saw what of a call, on record before they see it.

The one writer of ``TranscriptRead`` rows, of the who columns every disclosure row
carries (``who_columns``, ``models.Disclosure``), of the audit windows within which
further lines are the same read going on (``GLANCE_WINDOW``), and of the portal's read
continuation (a signed token: a page's refetch continues its audited read). Callers
check the right to see first (``access/policy.py``).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core import signing
from django.core.cache import cache
from django.http import HttpRequest

from anyreach_listen.access.client_address import client_address
from anyreach_listen.models import TranscriptRead, TranscriptVia

GLANCE_WINDOW = 60 * 60  # seconds one audited glance (or portal read) covers a person's lines
# How long a portal page's read token continues its audited read (``continues_read``).
READ_CONTINUATION = dt.timedelta(hours=1)
_READ_SALT = "portal.transcript-read"  # unchanged from the portal's: tokens out there stay good
CREDENTIAL_LABEL_MAX = 300  # the column's length


def credential_label(audit: Mapping[str, Any]) -> str:
    """The credential in words, kept on the audit row even after it is deleted."""
    for name, kind in (("api_key", "API key"), ("personal_access_token", "PAT")):
        credential = audit.get(name)
        if credential is not None:
            return f"{kind} {credential}"[:CREDENTIAL_LABEL_MAX]
    return ""


def who_columns(
    audit: Mapping[str, Any], *, client_ip: str | None = None, label: str | None = None
) -> dict[str, Any]:
    """The who columns of a disclosure row (a listen session or a transcript read).

    ``audit``: a policy's ``audit_fields`` (``user``, ``api_key``,
    ``personal_access_token``); ``label`` overrides the credential's words (None: from
    ``audit``); ``client_ip``: where the request came from.
    """
    return {
        "user": audit.get("user"),
        "api_key": audit.get("api_key"),
        "personal_access_token": audit.get("personal_access_token"),
        "credential_label": credential_label(audit) if label is None else label,
        "client_ip": client_ip or None,
    }


def request_ip(request: HttpRequest | None) -> str | None:
    """The request's client address, never an X-Forwarded-For entry the client wrote."""
    return client_address(request) if request is not None else None


def _read_row(
    conversation_id: uuid.UUID | str,
    *,
    via: str,
    audit: Mapping[str, Any],
    label: str | None = None,
    client_ip: str | None = None,
) -> TranscriptRead:
    return TranscriptRead(
        conversation_id=conversation_id,
        via=via,
        **who_columns(audit, client_ip=client_ip, label=label),
    )


def record_reads(
    conversation_ids: Sequence[uuid.UUID],
    *,
    via: str,
    audit: Mapping[str, Any],
    credential_label: str | None = None,
    request: HttpRequest | None = None,
) -> None:
    """Record a read of each call's transcript now (one row each, every time: one
    INSERT). A person's portal read also opens their glance window on each call: the
    lines the page is then pushed are that read going on."""
    if not conversation_ids:
        return
    client_ip = request_ip(request)
    TranscriptRead.objects.bulk_create(
        _read_row(c, via=via, audit=audit, label=credential_label, client_ip=client_ip)
        for c in conversation_ids
    )
    user = audit.get("user")
    if via == TranscriptVia.PORTAL and user is not None:
        now = time.time()
        windows = {glance_key(user.pk, c): now for c in conversation_ids}
        cache.set_many(windows, timeout=GLANCE_WINDOW)


def read_token(user_pk: object, conversation_id: uuid.UUID) -> str:
    """A token saying this person was just shown this call's transcript (and audited)."""
    return signing.TimestampSigner(salt=_READ_SALT).sign_object(
        {"u": str(user_pk), "c": str(conversation_id)}
    )


def continues_read(token: str, user_pk: object, conversation_id: uuid.UUID) -> bool:
    """Whether ``token`` is this person's audited read of this call, recent enough."""
    try:
        value = signing.TimestampSigner(salt=_READ_SALT).unsign_object(
            token, max_age=READ_CONTINUATION
        )
    except signing.BadSignature:  # also expired (SignatureExpired)
        return False
    return value == {"u": str(user_pk), "c": str(conversation_id)}


def portal_read(
    request: HttpRequest, audit: Mapping[str, Any], conversation_id: uuid.UUID, token: str = ""
) -> str:
    """A portal page's read of the call's transcript: recorded, unless ``token`` (the
    page's) continues this person's audited read of it. The token the page carries on
    (a fresh one after a recorded read)."""
    if token and continues_read(token, request.user.pk, conversation_id):
        return token
    record_reads([conversation_id], via=TranscriptVia.PORTAL, audit=audit, request=request)
    return read_token(request.user.pk, conversation_id)


def glance_key(user_pk: object, conversation_id: uuid.UUID | str) -> str:
    """The cache key of a person's audit window for a call; its value is when the
    window opened (``time.time()``), its timeout the window."""
    return f"anyreach_listen:glanced:{user_pk}:{conversation_id}"


def audit_glances(
    user: AbstractBaseUser | AnonymousUser,
    conversation_ids: Iterable[uuid.UUID | str],
    *,
    client_ip: str | None = None,
) -> dict[str, float]:
    """Audit the live lines of these calls just shown to ``user`` (the event stream's
    final lines and alert phrases, the dashboard's last lines): one ``TranscriptRead``
    row, via the portal, per call not glanced at (nor read in the portal) by this person
    within ``GLANCE_WINDOW``. One cache read when every call is covered (the common
    case: no query); else one INSERT for the rest. Callers check the right to read first.

    A call is claimed in the cache (``add``, atomic) before its row is written, so two
    sockets of the person seeing the same line at once write one row; a failed INSERT
    releases its claims and raises (the caller then shows nothing).

    Returns when each call's audit window ends (``time.time()`` seconds, by call id as
    a string): until then, lines of the call are covered."""
    if not user.is_authenticated:
        return {}
    keys = {glance_key(user.pk, c): str(c) for c in conversation_ids}
    return _audit_windows(
        keys,
        lambda conversation_id: _read_row(
            conversation_id, via=TranscriptVia.PORTAL, audit={"user": user}, client_ip=client_ip
        ),
    )


def api_read_key(reader: str, client_ip: str | None, conversation_id: uuid.UUID | str) -> str:
    """The cache key of a credential's API read window for a call, from one address."""
    return f"anyreach_listen:api-read:{reader}:{client_ip or '-'}:{conversation_id}"


def audit_api_read(
    conversation_id: uuid.UUID,
    *,
    reader: str,
    audit: Mapping[str, Any],
    credential_label: str,
    request: HttpRequest,
) -> None:
    """Audit an API read of a call's transcript (a page of it) or of its alerts, by the
    glance rule: one ``TranscriptRead`` row, via the API, per credential (``reader``),
    client address and call per ``GLANCE_WINDOW``; later reads in the window are that
    read going on (walking the pages, polling). The address is part of the window so
    that a credential used from a second place is recorded again at once. Raises when
    the row cannot be written (the caller then answers 500 and shows nothing)."""
    client_ip = request_ip(request)
    key = api_read_key(reader, client_ip, conversation_id)
    _audit_windows(
        {key: str(conversation_id)},
        lambda call_id: _read_row(
            call_id, via=TranscriptVia.API, audit=audit, label=credential_label, client_ip=client_ip
        ),
    )


def _audit_windows(
    keys: dict[str, str], row: Callable[[uuid.UUID], TranscriptRead]
) -> dict[str, float]:
    """The glance rule: for each audit window (cache key -> call id) not open yet, claim
    it and write ``row(call id)``; one cache read when every window is open, one INSERT
    for the rest. Returns when each call's window ends (``time.time()`` seconds)."""
    if not keys:
        return {}
    now = time.time()
    covered = cache.get_many(list(keys))
    until: dict[str, float] = {}
    claimed: list[str] = []
    for key, conversation_id in keys.items():
        opened = covered.get(key)
        if isinstance(opened, (int, float)):
            until[conversation_id] = opened + GLANCE_WINDOW
            continue
        if cache.add(key, now, timeout=GLANCE_WINDOW):
            claimed.append(key)
        # else another socket or request claimed it a moment ago: its row covers this.
        until[conversation_id] = now + GLANCE_WINDOW
    if claimed:
        rows = [row(uuid.UUID(keys[key])) for key in claimed]
        try:
            TranscriptRead.objects.bulk_create(rows)
        except BaseException:
            cache.delete_many(claimed)
            raise
    return until
