"""B4: one LiveKit webhook event fanned out to 500 signed-in portal websockets.

    .venv/bin/python bench/bench_fanout.py [--quick]

A signed webhook goes through the whole path (save, publish, each consumer's visibility
check) to supervisors' websockets, against ``bench/bare_fanout.py``'s bare broadcast on
the same daphne and channel layer; once on the embedded default and once on the
documented scale-out. How to read it: bench/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from livekit.api import ParticipantInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.support import (
    LIVEKIT_API_KEY,
    LIVEKIT_API_SECRET,
    app_env,
    arguments,
    daphne,
    failure_notes,
    log,
    logs_dir,
    migrate,
    num,
    percentile,
    postgres,
    ratio,
    seed,
    session_cookie,
    sqlite_url,
    stop_on_signals,
    table,
)
from tests.support.datastores import redis_server
from tests.support.livekit import sign_webhook, webhook_event

TARGET_P99_MS = 250.0
ROUND_TIMEOUT = 60.0  # seconds for every client to receive one event
CONNECT_PARALLEL = 50


@dataclass
class Fanout:
    """Latencies of every delivery over all rounds, and what did not arrive."""

    clients: int
    rounds: int
    latencies_ms: list[float] = field(default_factory=list)
    missing: int = 0
    lost: int = 0  # connected, but never received the warm-up event: left out of the rounds
    unexpected: int = 0

    @property
    def delivered(self) -> int:
        return len(self.latencies_ms)

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


class Listeners:
    """N websocket clients; each records when it receives the current round's message."""

    def __init__(self, expected_event: Callable[[dict[str, Any]], bool]) -> None:
        self.expected = expected_event
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []
        self.readers: list[asyncio.Task[None]] = []
        self.sent_at = 0.0
        self.latencies: list[float] = []
        self.received: set[int] = set()
        self.alive: set[int] = set()  # the clients a round waits for
        self.closed: set[int] = set()  # streams the server closed
        self.unexpected = 0
        self.all_in = asyncio.Event()

    async def connect(
        self, session: aiohttp.ClientSession, urls: list[str], headers: dict[str, str]
    ) -> None:
        gate = asyncio.Semaphore(CONNECT_PARALLEL)

        async def one(url: str) -> aiohttp.ClientWebSocketResponse:
            async with gate:
                origin = url.replace("ws://", "http://").split("/ws/")[0]
                timeout = aiohttp.ClientWSTimeout(ws_close=10)
                return await session.ws_connect(
                    url, headers=headers, origin=origin, timeout=timeout
                )

        self.sockets = list(await asyncio.gather(*(one(url) for url in urls)))
        self.alive = set(range(len(self.sockets)))
        self.readers = [asyncio.create_task(self._read(i, ws)) for i, ws in enumerate(self.sockets)]

    async def _read(self, index: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            await self._receive(index, ws)
        finally:
            # The server closed this stream: no round waits for it any more.
            self.closed.add(index)
            self.alive.discard(index)
            if self.received >= self.alive:
                self.all_in.set()

    async def _receive(self, index: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            now = time.perf_counter()
            if message.type != aiohttp.WSMsgType.TEXT or not self.expected(
                json.loads(message.data)
            ):
                self.unexpected += 1
                continue
            if index in self.received:
                self.unexpected += 1  # a second copy within one round
                continue
            self.received.add(index)
            self.latencies.append((now - self.sent_at) * 1000)
            if self.received >= self.alive:
                self.all_in.set()

    async def round(self, trigger: Callable[[], Any]) -> tuple[list[float], int]:
        """Fire ``trigger`` once; the latencies of this round and how many never arrived."""
        self.latencies, self.received = [], set()
        self.all_in.clear()
        self.sent_at = time.perf_counter()
        await trigger()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_in.wait(), ROUND_TIMEOUT)
        return list(self.latencies), len(self.alive - self.received)

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)
        for reader in self.readers:
            reader.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)


@contextlib.asynccontextmanager
async def listeners(
    urls: list[str], headers: dict[str, str], expected: Callable[[dict[str, Any]], bool]
) -> AsyncIterator[tuple[Listeners, aiohttp.ClientSession]]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        group = Listeners(expected)
        try:
            await group.connect(session, urls, headers)
            yield group, session
        finally:
            await group.close()


async def measure(
    urls: list[str],
    headers: dict[str, str],
    expected: Callable[[dict[str, Any]], bool],
    post: Callable[[aiohttp.ClientSession, int], Any],
    rounds: int,
) -> Fanout:
    """One warm-up round, then ``rounds`` measured ones.

    A client is lost when its stream never delivers the warm-up event or the server
    closes it; later rounds do not wait for it.
    """
    result = Fanout(clients=len(urls), rounds=rounds)
    async with listeners(urls, headers, expected) as (group, session):
        log(f"  {len(urls)} websockets connected")
        _, result.lost = await group.round(lambda: post(session, 0))
        if result.lost == len(urls):
            raise RuntimeError("warm-up: no client received the event")
        # A client whose stream died (the server logs why) would stall every round.
        group.alive = group.received - group.closed
        for i in range(1, rounds + 1):
            latencies, missing = await group.round(functools.partial(post, session, i))
            result.latencies_ms += latencies
            result.missing += missing
        result.lost = len(urls) - len(group.alive)
        result.unexpected = group.unexpected
    log(
        f"  p50 {result.p(50):.1f} ms, p99 {result.p(99):.1f} ms, max {result.p(100):.1f} ms, "
        f"missing {result.missing}, lost {result.lost}, unexpected {result.unexpected}"
    )
    return result


def _spread(workers: list[str], path: str, n: int) -> list[str]:
    return [workers[i % len(workers)].replace("http://", "ws://") + path for i in range(n)]


@contextlib.contextmanager
def _servers(
    app: str, env: dict[str, str], work: Path, count: int, ready: str
) -> Iterator[list[str]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(daphne(app, env, work, ready_path=ready)) for _ in range(count)]


def ours(env: dict[str, str], work: Path, workers: int, clients: int, rounds: int) -> Fanout:
    migrate(env)
    world = seed(env, "--live", "1")
    conversation = str(world["conversations"][0])  # type: ignore[index]
    room = f"{world['slug']}-room-0"
    headers = {"Cookie": session_cookie(world)}

    def expected(message: dict[str, Any]) -> bool:
        return message.get("conversation", {}).get("id") == conversation

    with _servers("config.asgi:application", env, work, workers, "/core/openapi.json") as urls:
        webhook_url = f"{urls[0]}/livekit/webhook"
        ws_urls = _spread(urls, "/ws/listen/events/", clients)
        return asyncio.run(
            measure(ws_urls, headers, expected, webhook_poster(webhook_url, room), rounds)
        )


def webhook_poster(url: str, room: str) -> Callable[[aiohttp.ClientSession, int], Any]:
    """POST the i-th agent presence event (joined, left, joined, …) for ``room``."""

    async def post(session: aiohttp.ClientSession, i: int) -> None:
        body = webhook_event(
            "participant_joined" if i % 2 == 0 else "participant_left",
            room,
            identity="bench-agent",
            kind=ParticipantInfo.Kind.AGENT,
            event_id=f"EV_bench_{uuid.uuid4().hex}",
        )
        auth = sign_webhook(body, LIVEKIT_API_KEY, LIVEKIT_API_SECRET)
        headers = {"Authorization": auth, "Content-Type": "application/webhook+json"}
        async with session.post(url, data=body, headers=headers) as r:
            if r.status != 200:
                raise RuntimeError(f"webhook: {r.status} {(await r.text())[:300]}")

    return post


def bare(env: dict[str, str], work: Path, workers: int, clients: int, rounds: int) -> Fanout:
    def expected(message: dict[str, Any]) -> bool:
        return message.get("type") == "conversation.updated"

    with _servers("bench.bare_fanout:application", env, work, workers, "/") as urls:
        send_url = f"{urls[0]}/send"

        async def post(session: aiohttp.ClientSession, i: int) -> None:
            async with session.post(send_url) as r:
                if r.status != 200:
                    raise RuntimeError(f"bare send: {r.status}")

        return asyncio.run(measure(_spread(urls, "/ws/", clients), {}, expected, post, rounds))


Row = tuple[str, int, Fanout, Fanout]
Environment = contextlib.AbstractContextManager[dict[str, str]]


def report(rows: list[Row], failures: dict[str, str]) -> str:
    table_rows = [
        [
            layer,
            workers,
            o.clients,
            num(o.p(50)),
            num(b.p(50)),
            ratio(o.p(50), b.p(50)),
            num(o.p(99)),
            num(b.p(99)),
            ratio(o.p(99), b.p(99)),
            f"{o.delivered} / {o.delivered + o.missing}" + (f" ({o.lost} lost)" if o.lost else ""),
            f"{b.delivered} / {b.delivered + b.missing}" + (f" ({b.lost} lost)" if b.lost else ""),
        ]
        for layer, workers, o, b in rows
    ]
    headers = [
        "channel layer",
        "daphne workers",
        "clients",
        "ours p50 ms",
        "bare p50 ms",
        "ratio",
        "ours p99 ms",
        "bare p99 ms",
        "ratio",
        "delivered (ours)",
        "delivered (bare)",
    ]
    rounds = rows[0][2].rounds if rows else 0
    out = ["### B4 Event fan-out to portal websockets", "", table(headers, table_rows), ""]
    out.append(
        f"Measured: {rounds} events per configuration after one warm-up event; latency from "
        "just before the HTTP POST to each websocket client's receipt, over every delivery "
        f"(delivered: received / expected; lost: clients, connected {CONNECT_PARALLEL} at a "
        "time, whose stream never delivered the warm-up event or was closed by the server, "
        "left out of the later rounds; the server logs say why). "
        "Ours: a signed LiveKit `participant_joined`/`participant_left` webhook of the call's "
        "agent to `/livekit/webhook` on the first worker (verify, save, publish on commit), "
        "then per client the consumer's visibility decision and send; clients signed in as a "
        "supervisor of the call's team, split evenly over the workers. Bare: "
        "`bench/bare_fanout.py`, one `group_send` from `POST /send` on the first worker to "
        "consumers that only forward it (same daphne, same channel layer, same message shape). "
        "In-memory: one daphne on SQLite; Redis: two daphne workers on PostgreSQL. All clients "
        "run in one asyncio process on the same 2 cores as the servers. Ratios: ours ÷ bare "
        "latency (lower is better)."
    )
    lines = ["", "Targets:"]
    for layer, workers, o, _ in rows:
        if workers == 1:
            met = o.p(99) <= TARGET_P99_MS and o.missing == 0 and o.lost == 0
            lines.append(
                f"- {layer}, {o.clients} clients in one process: p99 {o.p(99):.0f} ms "
                f"(target ≤ {TARGET_P99_MS:.0f} ms), missing {o.missing}, lost {o.lost}: "
                f"{'met' if met else 'NOT met'}"
            )
    out += lines
    out += failure_notes(failures)
    return "\n".join(out)


def main() -> int:
    stop_on_signals()
    args = arguments(__doc__)
    clients, rounds = (500, 3) if args.quick else (500, 20)
    rows: list[Row] = []
    failures: dict[str, str] = {}
    work = logs_dir("fanout")
    log(f"logs: {work}")
    configurations: list[tuple[str, int, Callable[[], Environment]]] = [
        ("in-memory", 1, lambda: _embedded(work)),
        ("Redis", 2, lambda: _scale_out(work)),
    ]
    for layer, workers, make_env in configurations:
        try:
            with make_env() as env:
                log(f"B4: {layer}, {workers} worker(s), ours")
                o = ours(env, work, workers, clients, rounds)
                log(f"B4: {layer}, {workers} worker(s), bare")
                b = bare(env, work, workers, clients, rounds)
            rows.append((layer, workers, o, b))
        except Exception as exc:
            log(f"{layer} failed: {exc!r}")
            failures[layer] = f"{type(exc).__name__}: {exc}"
    print(report(rows, failures))
    return 1 if failures else 0


@contextlib.contextmanager
def _embedded(work: Path) -> Iterator[dict[str, str]]:
    directory = work / "embedded"
    directory.mkdir()
    yield app_env(sqlite_url(directory))


@contextlib.contextmanager
def _scale_out(work: Path) -> Iterator[dict[str, str]]:
    with postgres(work) as database_url, redis_server() as redis_url:
        yield app_env(database_url, redis_url)


if __name__ == "__main__":
    sys.exit(main())
