"""The recorder's writer: a room's segment updates delivered to the portal, in order, none lost.

The recorder does not write into the database: a ``Writer`` per room posts its updates
to the portal's ``POST /livekit/recorder`` (``recorder/intake.py``), signed with the
LiveKit API secret, and the portal records them, so the portal's process publishes the
live events whatever its channel layer and cache. Delivery, retries and the bounded
queue: docs/operations/recorder.md and docs/internals/recorder.md.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Sequence

import httpx

from anyreach_listen.conf import listen_settings
from anyreach_listen.recorder.wire import (
    DELIVERY_PATH,
    MAX_SEGMENT_TEXT,
    Segment,
    SegmentIn,
    delivery_body,
    registered_body,
    segment_json,
    sign,
    storable,
)

logger = logging.getLogger(__name__)

RETRY_DELAYS: Sequence[float] = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)  # the last one repeats
MAX_BATCH = 100
MAX_BATCH_BYTES = 48 * 1024  # the portal takes bodies up to 64 KB
REQUEST_TIMEOUT = 10.0
MAX_QUEUED = 1_000  # updates waiting past which interims are dropped (finals never are)
DROP_LOG_EVERY = 10.0  # seconds between two logs of dropped interims


def delivery_url(portal_url: str) -> str:
    return portal_url.rstrip("/") + DELIVERY_PATH


def _size(update: SegmentIn) -> int:
    return len(json.dumps(segment_json(update), ensure_ascii=False).encode())


def _storable(text: str, nul: str) -> str:
    """``text`` as every supported database stores it (``wire.storable``): each NUL
    character replaced by ``nul``, a lone surrogate by U+FFFD (a split pair joined).
    Also what can be encoded in a request at all (UTF-8 has no lone surrogates)."""
    if storable(text):
        return text
    text = text.replace("\x00", nul)
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def within_limits(update: Segment) -> SegmentIn:
    """``update`` as the intake takes it: its text storable (NUL removed), at most
    ``MAX_SEGMENT_TEXT`` characters and small enough for a request of its own; its id
    storable (NUL as U+FFFD: an id keeps its length, so it cannot become another). An
    id the intake still refuses (empty, too long) gets that update, alone, refused."""
    segment_id = _storable(update.id, "\ufffd")
    text = _storable(update.text, "")[:MAX_SEGMENT_TEXT]
    fitted = SegmentIn(segment_id, update.role, text, update.final)
    size = _size(fitted)
    while size > MAX_BATCH_BYTES and fitted.text:  # escaped control characters: 6 bytes each
        text = fitted.text[: len(fitted.text) * MAX_BATCH_BYTES // size]
        fitted = SegmentIn(segment_id, update.role, text, update.final)
        size = _size(fitted)
    return fitted


class _Backlog:
    """The updates waiting for delivery, in arrival order, bounded in interims (see the
    module's docstring); None is the writer's closing mark, always taken."""

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self._items: collections.deque[SegmentIn | None] = collections.deque()
        self._interims = 0
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: SegmentIn | None) -> SegmentIn | None:
        """Queue ``item``; the interim dropped to make room (maybe ``item`` itself), or None."""
        dropped = None
        if item is not None and len(self._items) >= self.bound:
            dropped = self._drop_oldest_interim()
            if dropped is None and not item.final:
                return item  # only finals wait: they stay, this interim goes
        self._items.append(item)
        if item is not None and not item.final:
            self._interims += 1
        self._ready.set()
        return dropped

    def _drop_oldest_interim(self) -> SegmentIn | None:
        if not self._interims:
            return None
        for index, waiting in enumerate(self._items):
            if waiting is not None and not waiting.final:
                del self._items[index]
                self._interims -= 1
                return waiting
        return None  # not reached: _interims counts the interims waiting

    def empty(self) -> bool:
        return not self._items

    def get_nowait(self) -> SegmentIn | None:
        item = self._items.popleft()
        if item is not None and not item.final:
            self._interims -= 1
        return item

    async def get(self) -> SegmentIn | None:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self.get_nowait()

    def waiting(self) -> list[SegmentIn]:
        return [u for u in self._items if u is not None]


class Writer:
    """One room's deliveries (one ``Writer`` per recorder job)."""

    def __init__(
        self,
        portal_url: str,
        room: str,
        conversation_id: str | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        flush_timeout: float = 30.0,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self.url = delivery_url(portal_url)
        self.room = room
        self.conversation_id = conversation_id
        self.retry_delays = retry_delays
        self.flush_timeout = flush_timeout
        self.stored = 0  # updates the portal took (for logs and tests)
        self.dropped = 0  # interims dropped from a full queue
        self._dropped_unlogged = 0
        self._next_drop_log = 0.0
        self._client = client
        self._own_client = client is None
        self._queue = _Backlog(max_queued)
        self._taken: list[SegmentIn] = []  # taken from the queue, not delivered yet
        self._deadline: float | None = None  # set by close(): stop retrying after it
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=REQUEST_TIMEOUT)
        self._task = asyncio.create_task(self._run(), name=f"transcript-writer-{self.room}")

    def put(self, update: Segment) -> None:
        fitted = within_limits(update)
        if fitted.final and (fitted.id, fitted.text) != (update.id, update.text):
            logger.warning(
                "Room %s: final segment %r (%s) fitted to the portal's limits (no NUL, no "
                "lone surrogate, %d characters of text at most): recorded as %r, %d of its "
                "%d characters",
                self.room,
                update.id,
                update.role,
                MAX_SEGMENT_TEXT,
                fitted.id,
                len(fitted.text),
                len(update.text),
            )
        if self._queue.put(fitted) is not None:
            self._dropped_interim()

    def _dropped_interim(self, *, flush: bool = False) -> None:
        if not flush:
            self.dropped += 1
            self._dropped_unlogged += 1
        now = time.monotonic()
        if self._dropped_unlogged and (flush or now >= self._next_drop_log):
            logger.warning(
                "Room %s: %d interim update(s) dropped (%d in all): %d updates wait for the "
                "portal, the most the writer keeps (final segments are always kept)",
                self.room,
                self._dropped_unlogged,
                self.dropped,
                self._queue.bound,
            )
            self._dropped_unlogged = 0
            self._next_drop_log = now + DROP_LOG_EVERY

    async def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued, retrying for at most ``timeout`` seconds (default
        ``flush_timeout``; a request in flight included), then stop and log what was not
        delivered."""
        flush_timeout = self.flush_timeout if timeout is None else timeout
        self._deadline = time.monotonic() + flush_timeout
        self._queue.put(None)
        self._dropped_interim(flush=True)
        try:
            if self._task is not None:
                try:
                    await asyncio.wait_for(self._task, timeout=flush_timeout)
                except TimeoutError:
                    # A portal that takes requests but never answers, or many batches
                    # left: the process is stopping, so stop here all the same.
                    left = self._taken + self._queue.waiting()
                    logger.error(
                        "Room %s: gave up delivering %d update(s) (final segments %s) at "
                        "the %.1f s flush timeout",
                        self.room,
                        len(left),
                        [u.id for u in left if u.final],
                        flush_timeout,
                    )
        finally:
            if self._own_client and self._client is not None:
                await self._client.aclose()

    async def _run(self) -> None:
        closing = False
        held: SegmentIn | None = None  # took the previous batch over its size
        while not closing:
            batch: list[SegmentIn] = []
            size = 0
            item = held if held is not None else await self._queue.get()
            held = None
            while True:
                if item is None:
                    closing = True
                    # Whatever was queued after the sentinel (nothing, normally) still counts.
                else:
                    item_size = _size(item)
                    if batch and size + item_size > MAX_BATCH_BYTES:
                        held = item  # the next batch's first
                        break
                    batch.append(item)
                    size += item_size
                if len(batch) >= MAX_BATCH or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if batch:
                self._taken = batch + ([held] if held is not None else [])
                await self._deliver(batch)
                self._taken = []
            if held is not None and closing:
                closing = False  # the sentinel came in this round; finish the held one first
                self._queue.put(None)

    def _body(self, batch: list[SegmentIn]) -> bytes:
        return delivery_body(self.room, batch, self.conversation_id)

    async def _post(self, body: bytes) -> httpx.Response:
        assert self._client is not None
        # A new token each attempt: retries can outlast a token's 60 s.
        authorization = sign(
            body, listen_settings.LIVEKIT_API_KEY, listen_settings.LIVEKIT_API_SECRET
        )
        return await self._client.post(
            self.url,
            content=body,
            headers={"Authorization": authorization, "Content-Type": "application/json"},
        )

    async def _deliver(self, batch: list[SegmentIn]) -> None:
        body = self._body(batch)
        attempt = 0
        while True:
            retry_after = 0.0
            try:
                response = await self._post(body)
            except httpx.TransportError as exc:  # refused, reset, timed out: the portal is away
                failure = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    self.stored += _recorded(response)
                    return
                if response.status_code in (400, 413) and len(batch) > 1:
                    # The intake refuses a whole body for one segment it cannot take: send
                    # them one by one (in order), so only the one(s) refused are dropped.
                    logger.warning(
                        "Room %s: the portal refused a batch of %d updates (HTTP %d %s); "
                        "sending them one at a time",
                        self.room,
                        len(batch),
                        response.status_code,
                        _error_code(response),
                    )
                    for update in batch:
                        await self._deliver([update])
                    return
                if response.status_code in (400, 413):
                    update = batch[0]
                    logger.error(
                        "Room %s: segment %r (%s, %s) refused by the portal, not recorded: "
                        "HTTP %d %s: %s",
                        self.room,
                        update.id,
                        update.role,
                        "final" if update.final else "interim",
                        response.status_code,
                        _error_code(response),
                        _error_message(response),
                    )
                    return
                if response.status_code != 429 and response.status_code < 500:
                    # A retry cannot help (transcript_closed, conversation_not_found, ...; a
                    # redirect: PORTAL_URL is not where the app answers, e.g. http for https).
                    logger.warning(
                        "Room %s: %d update(s) not recorded (final segments %s): HTTP %d %s",
                        self.room,
                        len(batch),
                        [u.id for u in batch if u.final],
                        response.status_code,
                        _error_code(response) or response.headers.get("Location", ""),
                    )
                    return
                failure = f"HTTP {response.status_code} {_error_code(response)}"
                retry_after = _retry_after(response)
            delay = max(self.retry_delays[min(attempt, len(self.retry_delays) - 1)], retry_after)
            attempt += 1
            if self._deadline is not None and time.monotonic() + delay > self._deadline:
                finals = [u.id for u in batch if u.final]
                logger.error(
                    "Room %s: gave up delivering %d update(s) (final segments %s) "
                    "after %d attempts: %s",
                    self.room,
                    len(batch),
                    finals,
                    attempt,
                    failure,
                )
                return
            logger.warning(
                "Room %s: delivering %d update(s) failed (%s); retry %d in %.2f s",
                self.room,
                len(batch),
                failure,
                attempt,
                delay,
            )
            await asyncio.sleep(delay)


def _recorded(response: httpx.Response) -> int:
    try:
        return int(response.json().get("recorded", 0))
    except (ValueError, AttributeError, TypeError):
        return 0


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return ""


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(float(response.headers.get("Retry-After", "0")), 60.0)
    except ValueError:
        return 0.0


def announce_registered(portal_url: str, worker_id: str, *, attempts: int = 5) -> bool:
    """Tell the portal a worker registered with LiveKit: it then dispatches recorders to
    the live calls lacking them (``recorder/dispatch.py``'s ``sweep``, on the portal's side, the
    one with the database). Best effort: ``sweep_listeners`` is the safety net."""
    body = registered_body(worker_id)
    for attempt in range(attempts):
        authorization = sign(
            body, listen_settings.LIVEKIT_API_KEY, listen_settings.LIVEKIT_API_SECRET
        )
        try:
            response = httpx.post(
                delivery_url(portal_url),
                content=body,
                headers={"Authorization": authorization, "Content-Type": "application/json"},
                timeout=REQUEST_TIMEOUT,
            )
        except httpx.TransportError as exc:
            failure = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code < 300:
                logger.info("Portal told of this worker's registration (%s)", worker_id)
                return True
            failure = f"HTTP {response.status_code} {_error_code(response)}"
            if response.status_code != 429 and response.status_code < 500:
                break
        time.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)] * 4)
    logger.warning("Could not tell the portal at %s of this worker: %s", portal_url, failure)
    return False
