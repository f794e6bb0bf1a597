"""The recorder's writer: segment updates into ``transcripts.record``, in order, none lost.

The room's event handlers only queue updates (they must never wait on the
database); one task stores them in arrival order, batching what piled up
while the previous write ran. A database error (SQLite busy, PostgreSQL
restarting, a dropped connection) is retried with backoff until it succeeds:
a final segment is never dropped while the recorder runs, and on shutdown the
writer keeps trying for ``flush_timeout`` seconds before it gives up and logs
what it could not store. Writes are idempotent by (role, segment id), so a
retried batch, or a second recorder in the room, stores nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from channels.db import database_sync_to_async
from django.db import DatabaseError

from . import transcripts
from .errors import ApiError
from .models import Conversation
from .transcripts import SegmentIn

logger = logging.getLogger(__name__)

RETRY_DELAYS: Sequence[float] = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)  # the last one repeats
MAX_BATCH = 100


class Writer:
    def __init__(
        self,
        conversation: Conversation,
        *,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        flush_timeout: float = 30.0,
    ) -> None:
        self.conversation = conversation
        self.retry_delays = retry_delays
        self.flush_timeout = flush_timeout
        self.stored = 0  # updates taken by ``record`` (for logs and tests)
        self._queue: asyncio.Queue[SegmentIn | None] = asyncio.Queue()
        self._deadline: float | None = None  # set by close(): stop retrying after it
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="transcript-writer")

    def put(self, update: SegmentIn) -> None:
        self._queue.put_nowait(update)

    async def close(self) -> None:
        """Store what is queued (retrying until ``flush_timeout``), then stop."""
        self._deadline = time.monotonic() + self.flush_timeout
        self._queue.put_nowait(None)
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        closing = False
        while not closing:
            batch: list[SegmentIn] = []
            item = await self._queue.get()
            while True:
                if item is None:
                    closing = True
                    # Whatever was queued after the sentinel (nothing, normally) still counts.
                else:
                    batch.append(item)
                if len(batch) >= MAX_BATCH or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if batch:
                await self._store(batch)

    async def _store(self, batch: list[SegmentIn]) -> None:
        attempt = 0
        while True:
            try:
                result = await _record(self.conversation, batch)
            except ApiError as exc:  # transcript_closed: the call ended too long ago
                logger.warning(
                    "Conversation %s: %d update(s) not recorded: %s",
                    self.conversation.pk,
                    len(batch),
                    exc.code,
                )
                return
            except Conversation.DoesNotExist:
                logger.warning("Conversation %s is gone; updates dropped", self.conversation.pk)
                return
            except DatabaseError as exc:
                delay = self.retry_delays[min(attempt, len(self.retry_delays) - 1)]
                attempt += 1
                if self._deadline is not None and time.monotonic() + delay > self._deadline:
                    finals = [u.id for u in batch if u.final]
                    logger.error(
                        "Conversation %s: gave up storing %d update(s) (final segments %s) "
                        "after %d attempts: %s",
                        self.conversation.pk,
                        len(batch),
                        finals,
                        attempt,
                        exc,
                    )
                    return
                logger.warning(
                    "Conversation %s: storing %d update(s) failed (%s: %s); retry %d in %.2f s",
                    self.conversation.pk,
                    len(batch),
                    type(exc).__name__,
                    exc,
                    attempt,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            self.stored += result.recorded
            return


@database_sync_to_async
def _record(conversation: Conversation, batch: list[SegmentIn]) -> transcripts.Recorded:
    return transcripts.record(conversation, batch)
