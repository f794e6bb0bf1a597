"""client_address.py: one client address for audit rows, throttles and log lines.

The rule, table-driven; then through the real doors: the API's failed-credential
bucket and ``ListenSession.client_ip`` (listener-token API), ``TranscriptRead.client_ip``
(transcript API, and the event stream's audited glance), the sign-in throttle (axes),
the webhook's log line. Behind a proxy, a client writes what it likes on the left of
``X-Forwarded-For``; the proxy appends the address it saw on the right.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from axes.models import AccessAttempt
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import Client, RequestFactory

from anyreach_listen.access import ratelimit
from anyreach_listen.access.client_address import client_address, resolve, scope_client_address
from anyreach_listen.models import ListenSession, TranscriptRead
from anyreach_listen.routing import websocket_urlpatterns
from anyreach_listen.transcripts import SegmentIn, record
from tests.support.livekit import deliver_webhook, webhook_event
from tests.support.world import TEST_LISTEN_SETTINGS, World
from tests.test_consumers_alerts import _in_memory_layer

__all__ = ["_in_memory_layer"]  # the autouse fixture, imported to apply here too

PROXY = "10.0.0.2"  # the address every request behind the proxy comes from
CLIENT = "203.0.113.20"
NEIGHBOUR = "203.0.113.21"  # another client behind the same proxy
SPOOFED = "198.51.100.66"  # what a client writes into X-Forwarded-For itself


def proxies(settings: Any, count: int, **more: Any) -> None:
    settings.ANYREACH_LISTEN = {**TEST_LISTEN_SETTINGS, "TRUSTED_PROXY_COUNT": count, **more}


# --- the rule --------------------------------------------------------------------------------

RULE = [
    # (proxies, REMOTE_ADDR, X-Forwarded-For, client address)
    (0, PROXY, f"{SPOOFED}", PROXY),  # no proxies: the header is anyone's writing
    (0, PROXY, "", PROXY),
    (0, "2001:db8::1", SPOOFED, "2001:db8::1"),
    (1, PROXY, f"{SPOOFED}, {CLIENT}", CLIENT),  # the entry the proxy appended
    (1, PROXY, CLIENT, CLIENT),
    (1, PROXY, f"{SPOOFED}, , {CLIENT},", CLIENT),  # empty entries are nobody's
    (2, "10.0.0.3", f"{SPOOFED}, {CLIENT}, {PROXY}", CLIENT),  # outer proxy wrote CLIENT
    (2, "10.0.0.3", CLIENT, "10.0.0.3"),  # fewer entries than proxies: not proxied
    (1, PROXY, "", PROXY),  # no header at all
    (3, PROXY, f"{CLIENT}, {PROXY}", PROXY),
    (1, PROXY, "unknown", PROXY),  # not an address: the peer's
    (1, PROXY, f"{CLIENT}, garbage", PROXY),  # and never the client's entry to its left
    (1, PROXY, f"{CLIENT}:4711", CLIENT),  # a port is not part of the address
    (1, PROXY, "[2001:db8::7]:443", "2001:db8::7"),
    (1, PROXY, "[2001:db8::7]", "2001:db8::7"),
    (1, PROXY, "2001:DB8:0:0::7", "2001:db8::7"),  # canonical form
    (1, PROXY, f"::ffff:{CLIENT}", CLIENT),  # an IPv4 client over IPv6
    (1, PROXY, "fe80::1%eth0", "fe80::1"),
    (0, "", "", None),
    (0, None, "", None),
    (0, "unix:/run/daphne.sock", "", None),
    (1, "", "garbage", None),
]


@pytest.mark.parametrize(("count", "peer", "forwarded", "expected"), RULE)
def test_the_rule(count: int, peer: str | None, forwarded: str, expected: str | None) -> None:
    assert resolve(peer, forwarded, count) == expected


@pytest.mark.parametrize(("count", "peer", "forwarded", "expected"), RULE)
def test_a_request_and_an_asgi_scope_by_the_setting(
    settings: Any, count: int, peer: str | None, forwarded: str, expected: str | None
) -> None:
    proxies(settings, count)
    request = RequestFactory().get("/")
    request.META.pop("REMOTE_ADDR")
    if peer is not None:
        request.META["REMOTE_ADDR"] = peer
    if forwarded:
        request.META["HTTP_X_FORWARDED_FOR"] = forwarded
    assert client_address(request) == expected
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    scope = {"client": [peer, 50123] if peer is not None else None, "headers": headers}
    assert scope_client_address(scope) == expected


def test_several_header_lines_are_one_list(settings: Any) -> None:
    proxies(settings, 1)
    headers = [(b"x-forwarded-for", SPOOFED.encode()), (b"X-Forwarded-For", CLIENT.encode())]
    assert scope_client_address({"client": [PROXY, 1], "headers": headers}) == CLIENT


@pytest.mark.parametrize("wrong", [-1, "1", True, None, 1.5])
def test_a_wrong_setting_trusts_no_header(settings: Any, wrong: object) -> None:
    proxies(settings, 0)
    settings.ANYREACH_LISTEN = {**settings.ANYREACH_LISTEN, "TRUSTED_PROXY_COUNT": wrong}
    request = RequestFactory().get("/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=SPOOFED)
    assert client_address(request) == PROXY


# --- through the API: the failed-credential bucket and the listen audit ----------------------


@pytest.fixture
def _one_window(monkeypatch: pytest.MonkeyPatch) -> None:
    # The failed-credential bucket is a fixed window: stay inside one.
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: 1_800_000_100.0))


def mint(world: World, secret: str, forwarded: str) -> Any:
    url = f"/core/conversations/{world.conversations['in_progress'].pk}/listener-token"
    headers = {"Authorization": f"Bearer {secret}", "X-Forwarded-For": forwarded}
    return Client(REMOTE_ADDR=PROXY).post(url, headers=headers)


@pytest.mark.usefixtures("_one_window")
def test_behind_a_proxy_a_client_cannot_leave_its_failed_credential_bucket(
    world: World, settings: Any
) -> None:
    proxies(settings, 1, FAILED_AUTH_LIMIT=3)
    unknown = "ak_000000000000_" + "x" * 43
    for n in range(3):
        # A new address of its own on the left each time; the proxy appends the real one.
        assert mint(world, unknown, f"198.51.100.{n}, {CLIENT}").status_code == 401
    good = world.secrets["ak_read_sensitive"]
    refused = mint(world, good, f"198.51.100.99, {CLIENT}")
    assert refused.status_code == 429, refused.content
    assert refused.json()["error"]["code"] == "rate_limited"
    # Another client behind the same proxy is not in that bucket.
    answered = mint(world, good, f"{CLIENT}, {NEIGHBOUR}")
    assert answered.status_code == 200, answered.content
    session = ListenSession.objects.get()
    assert session.client_ip == NEIGHBOUR  # what the proxy saw, not what the client wrote


def test_without_proxies_the_audit_keeps_the_peer_whatever_the_header_says(
    world: World, settings: Any
) -> None:
    proxies(settings, 0)
    assert mint(world, world.secrets["ak_read_sensitive"], CLIENT).status_code == 200
    proxies(settings, 1)
    assert mint(world, world.secrets["ak_read_sensitive"], CLIENT).status_code == 200
    rows = ListenSession.objects.order_by("minted_at").values_list("client_ip", flat=True)
    assert list(rows) == [PROXY, CLIENT]


def test_a_transcript_read_through_the_api_records_the_forwarded_client(
    world: World, settings: Any
) -> None:
    proxies(settings, 1)
    call = world.conversations["in_progress"]
    response = Client(REMOTE_ADDR=PROXY).get(
        f"/core/conversations/{call.pk}/transcript",
        headers={
            "Authorization": f"Bearer {world.secrets['ak_read_sensitive']}",
            "X-Forwarded-For": f"{SPOOFED}, {CLIENT}",
        },
    )
    assert response.status_code == 200, response.content
    assert list(TranscriptRead.objects.values_list("client_ip", flat=True)) == [CLIENT]


def test_a_rejected_webhook_logs_the_forwarded_client(
    world: World, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    proxies(settings, 1)
    client = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=f"{SPOOFED}, {CLIENT}")
    with caplog.at_level(logging.WARNING, logger="anyreach_listen"):
        response = deliver_webhook(client, webhook_event("room_finished", "room-x"), "forged")
    assert response.status_code == 401
    rejected = [r.getMessage() for r in caplog.records if "Rejected LiveKit" in r.getMessage()]
    assert len(rejected) == 1 and rejected[0].startswith(f"Rejected LiveKit webhook from {CLIENT}:")
    assert SPOOFED not in caplog.text and PROXY not in caplog.text


# --- the sign-in throttle (django-axes) counts the same address ------------------------------


def test_the_sign_in_throttle_counts_the_same_address(world: World, settings: Any) -> None:
    settings.AXES_ENABLED = True  # tests/conftest.py turns it off for everyone else
    proxies(settings, 1)
    client = Client(REMOTE_ADDR=PROXY)
    for forwarded in (f"{SPOOFED}, [2001:db8::7]:443", "198.51.100.1, 2001:db8:0::7"):
        response = client.post(
            "/accounts/login/",
            {"username": "supervisor", "password": "wrong"},
            headers={"X-Forwarded-For": forwarded},
        )
        assert response.status_code == 200
    # One address, in one form: the client's spoofed entries and the port change nothing.
    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == ["2001:db8::7"]
    assert AccessAttempt.objects.get().failures_since_start == 2


# --- the event stream's audited glance -------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_sockets_glance_is_audited_with_the_forwarded_client(
    world: World, settings: Any
) -> None:
    proxies(settings, 1)
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/listen/events/")
    communicator.scope["user"] = world.users["supervisor"]
    communicator.scope["client"] = [PROXY, 50123]  # daphne without --proxy-headers
    communicator.scope["headers"] = [(b"x-forwarded-for", f"{SPOOFED}, {CLIENT}".encode())]
    connected, _ = await communicator.connect()
    assert connected
    call = world.conversations["in_progress"]
    await sync_to_async(record)(call, [SegmentIn("a1", "agent", "Hello.", True)])
    message = await communicator.receive_json_from(timeout=5)
    assert message["type"] == "transcript.segment"
    rows = await sync_to_async(lambda: list(TranscriptRead.objects.values_list("client_ip")))()
    assert rows == [(CLIENT,)]
    await communicator.disconnect()
