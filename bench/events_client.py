"""A bench-only client of the portal's event stream, beside the page: a signed-in
supervisor's websocket (``/ws/listen/events/``) that stamps each message on arrival.

Runs in a thread with its own event loop (aiohttp), as ``sdk_probe.ProbeThread`` does:
the benchmarks' Playwright sync API owns the main thread. Its times are ``time.time()``
in ms, the clock the probe stamps its segments with.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import aiohttp

from anyreach_listen.routing import events_path


class EventsClient(threading.Thread):
    """``start()``, ``wait_open()``, then read ``received`` (``(ms, message)`` in arrival
    order) and ``stop()``."""

    def __init__(self, base_url: str, cookies: dict[str, str]) -> None:
        super().__init__(name="bench-events-client", daemon=True)
        self.url = base_url.replace("http", "ws", 1) + events_path()
        self.origin = base_url
        self.cookies = cookies
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.error: BaseException | None = None
        self._open = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._listen())
        except BaseException as exc:  # reported by wait_open() and stop()
            self.error = exc
            self._open.set()

    async def _listen(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        headers = {"Cookie": cookie, "Origin": self.origin}
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(self.url, headers=headers) as ws,
        ):
            self._open.set()
            stop = asyncio.ensure_future(self._stopping.wait())
            while not self._stopping.is_set():
                read = asyncio.ensure_future(ws.receive())
                done, _ = await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
                if read not in done:
                    read.cancel()
                    break
                message = read.result()
                at = time.time() * 1000  # first: the stamp is the arrival
                if message.type != aiohttp.WSMsgType.TEXT:
                    break  # closed by the server
                self.received.append((at, json.loads(message.data)))

    def wait_open(self, timeout: float) -> None:
        if not self._open.wait(timeout):
            raise TimeoutError(f"the events websocket did not open in {timeout}s")
        if self.error is not None:
            raise RuntimeError(f"the events websocket failed: {self.error!r}")

    def of_type(self, kind: str) -> list[tuple[float, dict[str, Any]]]:
        return [(at, m) for at, m in list(self.received) if m.get("type") == kind]

    def stop(self, timeout: float = 10) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self.join(timeout)
