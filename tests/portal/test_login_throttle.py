"""portal/login_throttle.py and config's django-axes settings: sign-in throttled per account
and per address.

Through the real login form (``/accounts/login/``) and the admin's, with the
client's address set per request (REMOTE_ADDR), on axes' migrated tables.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import AsyncClient, Client

from tests.support.world import World, password_of

ACCOUNT_LIMIT = settings.LOGIN_FAILURE_LIMITS["username"]
ADDRESS_LIMIT = settings.LOGIN_FAILURE_LIMITS["ip_address"]
LOGIN = "/accounts/login/"


@pytest.fixture(autouse=True)
def _axes_on(settings: Any) -> None:
    settings.AXES_ENABLED = True  # tests/conftest.py turns it off for everyone else


class Attempt:
    """One sign-in from a fresh browser at ``address``: what it answered and whom it signed in."""

    def __init__(
        self, username: str, password: str, address: str, url: str = LOGIN, forwarded: str = ""
    ) -> None:
        client = Client(REMOTE_ADDR=address)
        headers = {"X-Forwarded-For": forwarded} if forwarded else {}
        response = client.post(url, {"username": username, "password": password}, headers=headers)
        self.status_code = response.status_code
        self.text = response.content.decode()
        self.retry_after = response.get("Retry-After")
        self.user_id: str | None = client.session.get("_auth_user_id")


def signed_in(attempt: Attempt) -> bool:
    return attempt.user_id is not None and attempt.status_code == 302


def test_limits_are_sensible() -> None:
    assert 3 <= ACCOUNT_LIMIT < ADDRESS_LIMIT <= 100
    assert settings.AXES_COOLOFF_TIME.total_seconds() >= 60


def test_failures_for_one_account_lock_it_from_any_address(world: World) -> None:
    for n in range(ACCOUNT_LIMIT):
        attempt = Attempt("supervisor", "wrong", f"198.51.100.{n + 1}")
        assert attempt.status_code == (429 if n == ACCOUNT_LIMIT - 1 else 200)
    # The right password, from an address that never failed: still paused.
    attempt = Attempt("supervisor", password_of("supervisor"), "203.0.113.50")
    assert attempt.status_code == 429 and attempt.user_id is None
    text = attempt.text
    assert "Too many failed sign-ins for this account." in text
    assert "Sign-in is paused for 15 minutes" in text
    assert attempt.retry_after == "900"
    # Other accounts are not affected.
    assert signed_in(Attempt("qa", password_of("qa"), "203.0.113.50"))


def test_failures_across_accounts_from_one_address_lock_that_address(world: World) -> None:
    address = "198.51.100.77"
    for n in range(ADDRESS_LIMIT):
        # Never more than ACCOUNT_LIMIT - 1 per account: only the address adds up.
        attempt = Attempt(f"guess-{n // (ACCOUNT_LIMIT - 1)}", "wrong", address)
        assert attempt.status_code == (429 if n == ADDRESS_LIMIT - 1 else 200), n
    attempt = Attempt("supervisor", password_of("supervisor"), address)
    assert attempt.status_code == 429 and attempt.user_id is None
    assert "Too many failed sign-ins from your network." in attempt.text
    # The same account from another address signs in.
    assert signed_in(Attempt("supervisor", password_of("supervisor"), "203.0.113.9"))


def test_a_successful_sign_in_below_the_limit_works(world: World) -> None:
    for _ in range(ACCOUNT_LIMIT - 1):
        assert Attempt("supervisor", "wrong", "198.51.100.5").status_code == 200
    attempt = Attempt("supervisor", password_of("supervisor"), "198.51.100.5")
    assert signed_in(attempt)
    assert attempt.user_id == str(world.users["supervisor"].pk)


def test_a_failure_below_the_limit_shows_the_usual_message(world: World) -> None:
    attempt = Attempt("supervisor", "wrong", "198.51.100.6")
    assert attempt.status_code == 200
    assert "Your username and password didn't match." in attempt.text


def test_the_admin_login_counts_and_is_refused_too(world: World) -> None:
    for n in range(ACCOUNT_LIMIT):
        Attempt("admin", "wrong", f"198.51.100.{n + 1}", url="/admin/login/")
    attempt = Attempt("admin", password_of("admin"), "203.0.113.7")
    assert attempt.status_code == 429 and attempt.user_id is None
    assert "Too many failed sign-ins for this account." in attempt.text


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_lockout_page_under_asgi(world: World) -> None:
    # daphne runs the middleware chain asynchronously: axes' async path calls the
    # lockout page with other arguments than the sync one.
    client = AsyncClient()
    for _ in range(ACCOUNT_LIMIT):
        await client.post(LOGIN, {"username": "qa", "password": "wrong"})
    response = await client.post(LOGIN, {"username": "qa", "password": password_of("qa")})
    assert response.status_code == 429
    assert "Too many failed sign-ins for this account." in response.content.decode()
    assert "Content-Security-Policy" in response


def test_behind_a_proxy_the_forwarded_client_address_is_counted(
    world: World, settings: Any
) -> None:
    settings.ANYREACH_LISTEN = {**settings.ANYREACH_LISTEN, "TRUSTED_PROXY_COUNT": 1}
    proxy = "10.0.0.2"
    for n in range(ADDRESS_LIMIT):
        # What the client put in X-Forwarded-For varies; what the proxy appended does not.
        forwarded = f"203.0.113.{n}, 198.51.100.44"
        attempt = Attempt(f"guess-{n}", "wrong", proxy, forwarded=forwarded)
        assert attempt.status_code == (429 if n == ADDRESS_LIMIT - 1 else 200), n
    # Another client through the same proxy still signs in.
    other = Attempt("supervisor", password_of("supervisor"), proxy, forwarded="198.51.100.45")
    assert signed_in(other)
    locked = Attempt("supervisor", password_of("supervisor"), proxy, forwarded="198.51.100.44")
    assert locked.status_code == 429


def test_without_proxies_x_forwarded_for_is_ignored(world: World) -> None:
    for n in range(ADDRESS_LIMIT):
        attempt = Attempt(f"guess-{n}", "wrong", "198.51.100.60", forwarded=f"203.0.113.{n}")
        assert attempt.status_code == (429 if n == ADDRESS_LIMIT - 1 else 200), n
