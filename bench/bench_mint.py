"""Minting cost: our full path vs the bare LiveKit token it wraps, in one run.

    .venv/bin/python bench/bench_mint.py [--n 2000] [--split]

Times one listener token four ways in one process (bare JWT, our mint, a bare Django
view, the whole API request) so each ratio isolates one layer's cost; the four paths
and how to read the ratios are in bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["DATABASE_URL"] = "sqlite://:memory:"

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import include, path  # noqa: E402
from livekit.api import AccessToken  # noqa: E402

from anyreach_listen.access import credentials, policy, ratelimit  # noqa: E402
from anyreach_listen.access.credentials import issue_api_key  # noqa: E402
from anyreach_listen.api import views as api_views  # noqa: E402
from anyreach_listen.listening import entitlement, minting, sessions  # noqa: E402
from anyreach_listen.listening.minting import grant_listen, listener_grants  # noqa: E402
from anyreach_listen.models import Conversation, Organization  # noqa: E402


def bare_token() -> str:
    conf = settings.ANYREACH_LISTEN
    return (
        AccessToken(conf["LIVEKIT_API_KEY"], conf["LIVEKIT_API_SECRET"])
        .with_identity("listener-x")
        .with_ttl(dt.timedelta(seconds=300))
        .with_grants(listener_grants("bench-room"))
        .to_jwt()
    )


def bare_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"token": bare_token()})


urlpatterns = [path("bare", bare_view), path("", include("config.urls"))]


def per_call(fn: Callable[[], object], n: int, rounds: int = 5) -> float:
    """Median over rounds of the mean seconds per call."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - start) / n)
    return statistics.median(samples)


# The API path's phases: (label, owner, attribute). Each phase's time excludes the
# phases it calls, so the column adds up to the whole request.
PHASES = [
    ("rate limiter (cache)", ratelimit, "hit"),
    ("rate limiter (cache)", ratelimit, "peek"),
    ("credential hash", credentials, "hash_secret"),
    ("credential lookup", credentials, "authenticate"),
    ("conversation lookup (locked)", policy.CredentialAccess, "find"),
    ("JWT signing", minting, "sign_listener_token"),
    ("audit row insert", sessions, "create"),
    ("entitlement re-check (locked)", entitlement, "refusal"),
    ("grant: transaction, expiry, rest", api_views, "grant_listen"),  # imported by name
]


@contextmanager
def timed_phases(totals: dict[str, float]) -> Iterator[None]:
    """Wrap each phase to add its own time (children excluded) to ``totals``."""
    stack: list[float] = []  # children's time, per open phase
    originals = []
    for label, owner, name in PHASES:
        original = getattr(owner, name)
        originals.append((owner, name, original))

        def wrapper(*args: Any, _fn: Any = original, _label: str = label, **kw: Any) -> Any:
            stack.append(0.0)
            start = time.perf_counter()
            try:
                return _fn(*args, **kw)
            finally:
                spent = time.perf_counter() - start
                children = stack.pop()
                totals[_label] = totals.get(_label, 0.0) + spent - children
                if stack:
                    stack[-1] += spent

        setattr(owner, name, wrapper)
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def split(api: Callable[[], object], n: int) -> None:
    totals: dict[str, float] = {}
    api()
    with timed_phases(totals):
        start = time.perf_counter()
        for _ in range(n):
            api()
        whole = (time.perf_counter() - start) / n
    phases = {label: seconds / n for label, seconds in totals.items()}
    phases["middleware, handler, view, JSON, test client"] = whole - sum(phases.values())
    print(f"\napi split (n={n}, each phase without the phases it calls):")
    for label, seconds in phases.items():
        print(f"  {label:<46} {seconds * 1e6:>8.1f} µs  {seconds / whole:>6.1%}")
    print(f"  {'whole request':<46} {whole * 1e6:>8.1f} µs")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--split", action="store_true", help="where the api path's time goes")
    args = parser.parse_args()
    n = args.n
    settings.ANYREACH_LISTEN = {
        **settings.ANYREACH_LISTEN,
        "LIVEKIT_API_SECRET": "bench-secret-that-is-long-enough-1234",
        "RATE_LIMIT_REQUESTS": 10**9,
    }
    settings.ROOT_URLCONF = __name__
    call_command("migrate", verbosity=0)
    org = Organization.objects.create(name="Bench", slug="bench")
    conversation = Conversation.objects.create(
        organization=org, status="in_progress", livekit_room="bench-room"
    )
    _, key = issue_api_key(org, "bench", ["conversations:read_sensitive"])
    client = Client(HTTP_HOST="127.0.0.1")
    url = f"/core/conversations/{conversation.pk}/listener-token"

    def mint() -> object:
        return grant_listen(conversation, via="api")

    def view() -> object:
        return client.post("/bare")

    def api() -> object:
        response = client.post(url, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200, response.status_code
        return response

    paths = [("bare", bare_token), ("mint", mint), ("view", view), ("api", api)]
    results = {name: per_call(fn, n) for name, fn in paths}
    base = results["bare"]
    print(f"{'path':<6} {'µs/token':>10} {'x bare':>8}   (n={n}, median of 5 rounds)")
    for name, seconds in results.items():
        print(f"{name:<6} {seconds * 1e6:>10.1f} {seconds / base:>8.2f}")
    print(
        f"api / view = {results['api'] / results['view']:.2f}  (our checks, lookup and audit "
        "over a bare Django view minting the same token)"
    )
    if args.split:
        split(api, n)


if __name__ == "__main__":
    main()
