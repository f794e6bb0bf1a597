"""``config.asgi_handler``: under ASGI a request's sync part (signals, middleware chain,
view middleware and view) runs in one thread hop, not one per hook and per view, on a
thread kept from one request to the next."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import request_finished, request_started
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from django.utils import deprecation

from anyreach_listen.models import ListenSession
from config.asgi_handler import KeptThreads, OneHopASGIHandler
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


# --- kept threads: driven as a server drives the handler, no sync caller waiting ------------


def _scope(path: str = PAGE, query: bytes = b"") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"testserver")],
        "client": ("203.0.113.40", 50123),
        "server": ("testserver", 80),
    }


def _serve(handler: ASGIHandler, count: int, query: bytes = b"") -> list[list[Mapping[str, Any]]]:
    """``count`` requests at once on an event loop of a thread of their own, as under
    daphne (no ``async_to_sync`` caller); each one's messages."""

    async def one() -> list[Mapping[str, Any]]:
        sent: list[Mapping[str, Any]] = []
        body = iter([{"type": "http.request", "body": b"", "more_body": False}])

        async def receive() -> dict[str, Any]:
            return next(body, None) or await asyncio.get_running_loop().create_future()

        async def send(message: Mapping[str, Any]) -> None:
            sent.append(message)

        await handler(_scope(query=query), receive, send)
        return sent

    async def all_of_them() -> list[list[Mapping[str, Any]]]:
        return list(await asyncio.gather(*(one() for _ in range(count))))

    with ThreadPoolExecutor(max_workers=1) as server:
        return server.submit(asyncio.run, all_of_them()).result(timeout=30)


def _status(messages: list[Mapping[str, Any]]) -> int:
    return int(next(m["status"] for m in messages if m["type"] == "http.response.start"))


@pytest.fixture
def serving_threads() -> Iterator[list[str]]:
    """The name of the thread each request's ``request_started`` ran in."""
    names: list[str] = []

    def record(**kwargs: Any) -> None:
        names.append(threading.current_thread().name)

    request_started.connect(record)
    yield names
    request_started.disconnect(record)


@pytest.mark.parametrize("handler_class", [OneHopASGIHandler, ASGIHandler])
def test_requests_one_after_another_reuse_one_thread(
    handler_class: type[ASGIHandler], serving_threads: list[str]
) -> None:
    handler = handler_class()
    for _ in range(3):
        (answer,) = _serve(handler, 1)
        assert _status(answer) == 200
    if handler_class is OneHopASGIHandler:
        assert serving_threads == ["request-0_0"] * 3
    else:  # the control: Django's handler starts a thread per request
        assert len(set(serving_threads)) == 3


@pytest.mark.parametrize("kept", [2, 1])
def test_a_busy_kept_thread_is_not_shared(kept: int) -> None:
    """The first request's code waits until the second's has run: on one shared thread
    the two would deadlock. With one kept thread the second gets a thread of its own."""
    handler = OneHopASGIHandler()
    handler.kept_threads = KeptThreads(kept)
    second_ran = threading.Event()
    names: list[str] = []

    def record(**kwargs: Any) -> None:
        names.append(threading.current_thread().name)
        if len(names) == 1:
            assert second_ran.wait(timeout=10), "the second request never ran"
        else:
            second_ran.set()

    request_started.connect(record)
    try:
        answers = _serve(handler, 2)
    finally:
        request_started.disconnect(record)
    assert [_status(a) for a in answers] == [200, 200]
    assert names[0] == "request-0_0"
    if kept == 2:
        assert names[1] == "request-1_0"
    else:
        assert not names[1].startswith("request-")


def test_a_request_django_refuses_before_the_chain_is_answered() -> None:
    (answer,) = _serve(OneHopASGIHandler(), 1, query=b"\xff")  # not UTF-8
    assert _status(answer) == 400


def test_a_streaming_response_is_sent_then_closed() -> None:
    finished: list[str] = []

    async def parts() -> AsyncIterator[bytes]:
        for part in (b"one ", b"two"):
            yield part

    class Streaming(OneHopASGIHandler):
        def get_response(self, request: HttpRequest) -> HttpResponseBase:
            return StreamingHttpResponse(parts())

    def record(**kwargs: Any) -> None:
        finished.append(threading.current_thread().name)

    request_finished.connect(record)
    try:
        (answer,) = _serve(Streaming(), 1)
    finally:
        request_finished.disconnect(record)
    body = b"".join(m.get("body", b"") for m in answer if m["type"] == "http.response.body")
    assert (_status(answer), body) == (200, b"one two")
    assert finished == ["request-0_0"]  # once, on the request's kept thread
