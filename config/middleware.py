"""The portal project's own middleware."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase


class OneThreadChain:
    """Last in ``MIDDLEWARE``: under ASGI the whole chain runs in one thread hop.

    Django's middleware (``MiddlewareMixin``) are async-capable by running each
    ``process_request`` and ``process_response`` in a thread hop of its own
    (``sync_to_async``): fifteen hops a request for this project's ten, each a wake-up of
    the request's thread and a hand-over of the GIL, and under load each waits behind
    every other request's. A sync-only middleware innermost makes Django build the chain
    in sync mode, so it runs in one hop as under WSGI; the view (sync, as all of this
    project's are) takes one more. Nothing else changes: the same middleware run in the
    same order. It measured the bare Django view's CPU per request at about half
    (bench/README.md, B1). Drop it once the project's middleware and views are async.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)
