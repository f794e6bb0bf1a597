"""``config.middleware.OneThreadChain``: under ASGI the project's middleware chain runs
in one thread hop, not one per ``process_request`` and ``process_response``."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import AsyncClient, override_settings
from django.utils import deprecation

from config.middleware import OneThreadChain

CHAIN = "config.middleware.OneThreadChain"


@pytest.fixture
def hook_hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The middleware hooks Django sends to a thread one by one (``MiddlewareMixin``'s
    async mode), by name, as one request runs."""
    hops: list[str] = []

    def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(func, "__qualname__", repr(func)))
        return sync_to_async(func, *args, **kwargs)

    monkeypatch.setattr(deprecation, "sync_to_async", counting)
    return hops


def test_it_is_innermost_and_sync_only() -> None:
    assert settings.MIDDLEWARE[-1] == CHAIN
    assert OneThreadChain.sync_capable and not OneThreadChain.async_capable


@pytest.mark.asyncio
async def test_under_asgi_no_hook_takes_a_hop_of_its_own(hook_hops: list[str]) -> None:
    response = await AsyncClient().get("/public/listen-sdk")
    assert response.status_code == 200
    assert hook_hops == []


@pytest.mark.asyncio
async def test_without_it_every_hook_takes_a_hop(hook_hops: list[str]) -> None:
    """The counter above can see hops: each async-capable middleware takes its own."""
    without = [m for m in settings.MIDDLEWARE if m != CHAIN]
    with override_settings(MIDDLEWARE=without):
        response = await AsyncClient().get("/public/listen-sdk")
    assert response.status_code == 200
    assert "SecurityMiddleware.process_request" in hook_hops
    assert len(hook_hops) >= len(without)


def test_the_chain_still_answers_in_sync_mode(client: Any) -> None:
    """Django's test client (sync, as WSGI) passes through it unchanged."""
    response = client.get("/public/listen-sdk")
    assert response.status_code == 200
    assert response["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware ran
