"""Django's ASGI handler with a request's whole sync part in one hop to a kept thread."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import django
from asgiref.sync import AsyncToSync, ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpResponseBase
from django.urls import set_script_prefix

# Threads kept for requests, per process. Past this many requests in flight at once a
# request gets a thread of its own, as under Django's handler: a slow view (an outbound
# call) never makes another request wait for its thread.
KEPT_THREADS = 32


class KeptThreads:
    """One-thread executors that serve request after request. Django's handler starts a
    thread per request (a ``ThreadSensitiveContext`` of its own) and joins it at the end:
    under load that costs as much CPU as a listener token's own work. Each request here
    takes a free kept thread for all of its thread-sensitive code (asgiref's
    ``ThreadSensitiveContext(executor=...)``), or, with none free, Django's own. A request
    made from sync code through ``async_to_sync`` (a test's client) runs that code in the
    caller's thread, as under Django's handler: its transaction and connection are there."""

    def __init__(self, count: int = KEPT_THREADS) -> None:
        self._executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"request-{n}")
            for n in range(count)
        ]
        self._busy = [False] * count  # touched on the event loop's thread only

    @contextlib.asynccontextmanager
    async def context(self) -> AsyncIterator[None]:
        free = next((n for n, busy in enumerate(self._busy) if not busy), None)
        if free is None or getattr(AsyncToSync.executors, "current", None) is not None:
            yield  # Django's handler opens a context of its own
            return
        self._busy[free] = True
        try:
            async with ThreadSensitiveContext(executor=self._executors[free]):
                yield
        finally:
            self._busy[free] = False


class OneHopASGIHandler(ASGIHandler):
    """Runs a request's sync part (``request_started``, the middleware chain, the view,
    and ``request_finished`` as the response closes) in one thread hop, on a kept thread.

    Django's own handler builds the chain in async mode: each hook of an async-capable
    middleware (``MiddlewareMixin``) takes a thread hop of its own, and under a sync-only
    innermost middleware the chain hops back to the event loop to resolve the view, then
    to the thread again for each ``process_view`` and for the view; the two signals take
    a hop each. This project's views are all sync, so here the chain is built as under
    WSGI and the event loop hands the request to it once. Async views would still work
    (Django wraps them in ``async_to_sync``) but gain nothing. A streaming response is
    sent as Django sends it and closed in a hop of its own.

    One difference from Django's: a client that disconnects while its view runs does
    not cancel the request's task. A sync view runs to its end either way; the answer
    then goes nowhere. Measured in bench/README.md (B1).
    """

    def __init__(self) -> None:
        super().__init__()
        self.kept_threads = KeptThreads()

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Django's own ThreadSensitiveContext inside finds this one and leaves it be.
        async with self.kept_threads.context():
            await super().__call__(scope, receive, send)

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        with contextlib.closing(body_file):
            set_script_prefix(get_script_prefix(scope))
            respond = sync_to_async(self._respond, thread_sensitive=True)
            response = await respond(scope, body_file)
            await self.send_response(response, send)
            if response.streaming:
                await sync_to_async(response.close, thread_sensitive=True)()

    def _respond(self, scope: Any, body_file: Any) -> HttpResponseBase:
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, refusal = self.create_request(scope, body_file)
        if request is None:
            assert refusal is not None  # one or the other: a body too large, a bad host name
            response = refusal
        else:
            response = self.get_response(request)
            response._handler_class = self.__class__  # type: ignore[attr-defined]
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size  # the server chunks it
        if not response.streaming:
            # Its body is in memory: request_finished (whose receivers close this
            # thread's database connections) can go before it is sent.
            response.close()
        return response


def get_asgi_application() -> OneHopASGIHandler:
    """``django.core.asgi.get_asgi_application`` with the one-hop handler."""
    django.setup(set_prefix=False)
    return OneHopASGIHandler()
