"""disclosure.py: the who columns of both audits, recorded reads and their glance windows,
the portal's read continuation; no other module writes a transcript read."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from anyreach_listen import disclosure
from anyreach_listen.listening.minting import grant_listen
from anyreach_listen.models import (
    ApiKey,
    Conversation,
    ListenSession,
    ListenVia,
    PersonalAccessToken,
    TranscriptRead,
    TranscriptVia,
)
from tests.support.world import World

ROOT = Path(__file__).resolve().parent.parent
WHO = ("user_id", "api_key_id", "personal_access_token_id", "credential_label", "client_ip")


@pytest.fixture
def call(world: World) -> Conversation:
    return world.conversations["in_progress"]


def _request(user: User, address: str = "198.51.100.7") -> Any:
    request = RequestFactory().get("/", REMOTE_ADDR=address, HTTP_USER_AGENT="probe")
    request.user = user
    return request


def test_who_columns_name_the_credential_in_words(world: World) -> None:
    key = ApiKey.objects.get(organization=world.org, name="rs")
    pat = PersonalAccessToken.objects.filter(user=world.users["supervisor"]).first()
    person = disclosure.who_columns({"user": world.users["qa"]}, client_ip="")
    assert person == {
        "user": world.users["qa"],
        "api_key": None,
        "personal_access_token": None,
        "credential_label": "",
        "client_ip": None,
    }
    by_key = disclosure.who_columns({"api_key": key}, client_ip="203.0.113.1")
    assert (by_key["credential_label"], by_key["client_ip"]) == (f"API key {key}", "203.0.113.1")
    by_pat = disclosure.who_columns({"user": pat.user, "personal_access_token": pat})  # type: ignore[union-attr]
    assert by_pat["credential_label"] == f"PAT {pat}"
    # A label given wins, even empty: the caller's words for a credential gone.
    assert disclosure.who_columns({"api_key": key}, label="")["credential_label"] == ""


def test_a_listen_and_a_read_by_one_credential_carry_the_same_who(
    world: World, call: Conversation
) -> None:
    key = ApiKey.objects.get(organization=world.org, name="rs")
    request = _request(world.users["qa"])
    grant_listen(call, via=ListenVia.API, audit={"api_key": key}, request=request)
    disclosure.record_reads(
        [call.pk], via=TranscriptVia.API, audit={"api_key": key}, request=request
    )
    heard = ListenSession.objects.values_list(*WHO).get()
    read = TranscriptRead.objects.values_list(*WHO).get()
    assert heard == read == (None, key.pk, None, f"API key {key}", "198.51.100.7")


def test_recorded_reads_write_a_row_per_call_every_time_in_one_insert(
    world: World, call: Conversation
) -> None:
    calls = [call.pk, world.conversations["ringing"].pk]
    audit = {"user": world.users["supervisor"]}
    for _ in range(2):
        with CaptureQueriesContext(connection) as queries:
            disclosure.record_reads(calls, via=TranscriptVia.PORTAL, audit=audit)
        assert len(queries.captured_queries) == 1
    assert TranscriptRead.objects.filter(user=world.users["supervisor"]).count() == 4
    disclosure.record_reads([], via=TranscriptVia.PORTAL, audit=audit)
    assert TranscriptRead.objects.count() == 4


def test_a_persons_portal_read_covers_their_glances_an_api_read_does_not(
    world: World, call: Conversation
) -> None:
    supervisor, qa = world.users["supervisor"], world.users["qa"]
    disclosure.record_reads([call.pk], via=TranscriptVia.PORTAL, audit={"user": supervisor})
    disclosure.record_reads([call.pk], via=TranscriptVia.API, audit={"user": qa})
    with CaptureQueriesContext(connection) as covered:
        disclosure.audit_glances(supervisor, [call.pk])
    assert covered.captured_queries == []
    disclosure.audit_glances(qa, [call.pk])
    assert sorted(TranscriptRead.objects.filter(user=qa).values_list("via", flat=True)) == [
        "api",
        "portal",
    ]


def test_a_portal_read_is_recorded_unless_its_token_continues_one(
    world: World, call: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    supervisor, qa = world.users["supervisor"], world.users["qa"]
    audit = {"user": supervisor}
    token = disclosure.portal_read(_request(supervisor), audit, call.pk)
    assert TranscriptRead.objects.count() == 1
    # The page's refetch with its token: the same read going on, no row, the same token.
    assert disclosure.portal_read(_request(supervisor), audit, call.pk, token) == token
    assert TranscriptRead.objects.count() == 1
    # Not this person's, not this call's, not a token at all: a read of its own.
    disclosure.portal_read(_request(qa), {"user": qa}, call.pk, token)
    other = world.conversations["ringing"].pk
    disclosure.portal_read(_request(supervisor), audit, other, token)
    disclosure.portal_read(_request(supervisor), audit, call.pk, "forged")
    assert TranscriptRead.objects.count() == 4
    # Past READ_CONTINUATION: recorded again, with a new token.
    monkeypatch.setattr(disclosure, "READ_CONTINUATION", dt.timedelta(seconds=-1))
    assert not disclosure.continues_read(token, supervisor.pk, call.pk)
    disclosure.portal_read(_request(supervisor), audit, call.pk, token)
    assert TranscriptRead.objects.count() == 5


def test_both_audits_keep_their_reverse_names_and_plain_foreign_keys(world: World) -> None:
    """The shared base must not change the schema (no migration): same accessors."""
    user = world.users["supervisor"]
    assert user.listen_sessions.count() == user.transcript_reads.count() == 0
    for model, name in ((ListenSession, "listen_sessions"), (TranscriptRead, "transcript_reads")):
        for field in ("conversation", "user", "api_key", "personal_access_token"):
            _, path, _, kwargs = model._meta.get_field(field).deconstruct()  # type: ignore[union-attr]
            assert (path, kwargs["related_name"]) == ("django.db.models.ForeignKey", name)


def test_no_other_module_writes_a_transcript_read() -> None:
    writes = re.compile(r"(?<!class )TranscriptRead\(|TranscriptRead\.objects\.(bulk_)?create")
    writers = [
        str(path.relative_to(ROOT))
        for folder in ("anyreach_listen", "portal", "demo")
        for path in (ROOT / folder).rglob("*.py")
        if "migrations" not in path.parts and writes.search(path.read_text())
    ]
    assert writers == ["anyreach_listen/disclosure.py"]
