"""``config.asgi_handler``: under ASGI a request's middleware chain, view middleware and
view run in one thread hop, not one per hook and per view."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler
from django.utils import deprecation

from anyreach_listen.models import ListenSession
from config.asgi_handler import OneHopASGIHandler
from tests.support.asgi import request
from tests.support.world import World

PAGE = "/public/listen-sdk"  # a sync view behind the whole middleware chain


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What Django sends to a thread during a request, by name: a middleware hook
    (``MiddlewareMixin``'s async mode) or a view (the async handler's view call)."""
    seen: list[str] = []

    def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(func, "__qualname__", repr(func)))
        return sync_to_async(func, *args, **kwargs)

    monkeypatch.setattr(deprecation, "sync_to_async", counting)
    monkeypatch.setattr(base, "sync_to_async", counting)
    return seen


def test_the_chain_and_the_view_take_no_hop_of_their_own(hops: list[str]) -> None:
    handler = OneHopASGIHandler()  # built before counting starts: only the request counts
    hops.clear()
    answer = request(handler, "GET", PAGE)
    assert answer.status == 200
    assert answer.headers["x-content-type-options"] == "nosniff"  # SecurityMiddleware ran
    assert hops == []


def test_djangos_own_handler_hops_for_the_view(hops: list[str]) -> None:
    """The counter above can see hops: Django's handler sends the view to a thread."""
    handler = ASGIHandler()
    hops.clear()
    assert request(handler, "GET", PAGE).status == 200
    assert hops != []


def test_the_project_serves_http_with_it() -> None:
    from config import asgi

    # With DEBUG the static files handler wraps it.
    served = getattr(asgi.django_asgi_app, "application", asgi.django_asgi_app)
    assert isinstance(served, OneHopASGIHandler)


def test_listener_tokens_through_the_project_application(world: World) -> None:
    """The token endpoint under the project's ASGI application, its API key kept after
    the first mint: each answers 200 with its own audit row."""
    from config.asgi import application

    call = world.conversations["in_progress"]
    bearer = ("authorization", f"Bearer {world.secrets['ak_read_sensitive']}")
    answers = [
        request(
            application, "POST", f"/core/conversations/{call.pk}/listener-token", headers=[bearer]
        )
        for _ in range(2)
    ]
    assert [a.status for a in answers] == [200, 200]
    assert ListenSession.objects.filter(conversation=call).count() == 2
