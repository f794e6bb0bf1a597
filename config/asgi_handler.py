"""Django's ASGI handler with a request's whole sync part in one thread hop."""

from __future__ import annotations

from typing import Any

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler


class OneHopASGIHandler(ASGIHandler):
    """Runs the middleware chain, the view middleware and the view in one thread hop.

    Django's own handler builds the chain in async mode: each hook of an async-capable
    middleware (``MiddlewareMixin``) takes a thread hop of its own, and under a sync-only
    innermost middleware the chain hops back to the event loop to resolve the view, then
    to the thread again for each ``process_view`` and for the view. This project's views
    are all sync, so here the chain is built as under WSGI (sync, views resolved and
    called in the same thread) and the event loop hands the request to it once. Async
    views would still work (Django wraps them in ``async_to_sync``) but gain nothing. It
    measured the bare Django view's CPU per request a tenth to a fifth lower than the sync
    chain with its async innermost handler (bench/README.md, B1).
    """

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)
        # The one hop: thread-sensitive, so the request's sync code (request_started,
        # the chain, request_finished) shares the request's one thread, as Django's does.
        chain: Any = getattr(self, "_middleware_chain")  # noqa: B009 (untyped in django-stubs)
        self._middleware_chain = sync_to_async(chain, thread_sensitive=True)


def get_asgi_application() -> OneHopASGIHandler:
    """``django.core.asgi.get_asgi_application`` with the one-hop handler."""
    django.setup(set_prefix=False)
    return OneHopASGIHandler()
