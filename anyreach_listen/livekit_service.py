"""Server-side calls to LiveKit's RoomService, usable from sync and async code.

``livekit.api.LiveKitAPI`` is aiohttp-based: it must be created inside a
running event loop and closed in it. ``run_sync`` runs a coroutine from
synchronous code (views, the admin, signal receivers) whether or not the
calling thread already runs an event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import AsyncIterator, Coroutine, Iterable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from livekit import api

from .conf import listen_settings
from .minting import LISTENER_IDENTITY_PREFIX

logger = logging.getLogger(__name__)

# RoomService calls are small; a dead server must not hang an admin request.
REQUEST_TIMEOUT = 5.0


@asynccontextmanager
async def livekit_api(
    url: str | None = None, api_key: str | None = None, api_secret: str | None = None
) -> AsyncIterator[api.LiveKitAPI]:
    """A ``LiveKitAPI`` for the configured server (or the one given), closed on exit."""
    client = api.LiveKitAPI(
        url or listen_settings.livekit_api_url,
        api_key or listen_settings.LIVEKIT_API_KEY,
        api_secret or listen_settings.LIVEKIT_API_SECRET,
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        failover=False,
    )
    try:
        yield client
    finally:
        await client.aclose()


def _is_not_found(exc: api.TwirpError) -> bool:
    return exc.code == api.TwirpErrorCode.NOT_FOUND or exc.status == 404


async def remove_participant(room: str, identity: str, client: api.LiveKitAPI) -> bool:
    """Remove ``identity`` from ``room``; False when it (or the room) is not there."""
    try:
        await client.room.remove_participant(
            api.RoomParticipantIdentity(room=room, identity=identity)
        )
    except api.TwirpError as exc:
        if _is_not_found(exc):
            return False
        raise
    return True


async def remove_listeners(targets: Iterable[tuple[str, str]]) -> dict[str, bool | None]:
    """Remove each ``(room, identity)``; returns identity -> True (removed), False (not
    there) or None (the call failed, logged: the caller may retry)."""
    results: dict[str, bool | None] = {}
    targets = list(targets)
    if not targets:
        return results
    async with livekit_api() as client:
        for room, identity in targets:
            try:
                results[identity] = await remove_participant(room, identity, client)
            except Exception:
                logger.exception("Could not remove listener %s from room %s", identity, room)
                results[identity] = None
    return results


async def list_listeners(rooms: Iterable[str]) -> dict[str, set[str]]:
    """The listener identities (``listener-`` prefix) in each room that exists."""
    found: dict[str, set[str]] = {}
    async with livekit_api() as client:
        for room in rooms:
            try:
                response = await client.room.list_participants(
                    api.ListParticipantsRequest(room=room)
                )
            except api.TwirpError as exc:
                if _is_not_found(exc):
                    continue
                raise
            found[room] = {
                p.identity
                for p in response.participants
                if p.identity.startswith(LISTENER_IDENTITY_PREFIX)
            }
    return found


async def delete_room(room: str, client: api.LiveKitAPI | None = None) -> None:
    """Close ``room`` for everyone in it (ignores a room that is already gone)."""
    if client is None:
        async with livekit_api() as own:
            await delete_room(room, own)
        return
    try:
        await client.room.delete_room(api.DeleteRoomRequest(room=room))
    except api.TwirpError as exc:
        if not _is_not_found(exc):
            raise


def run_sync[T](coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code.

    Without a running loop in this thread (a sync view, the admin, a command, a
    ``sync_to_async`` worker): ``asyncio.run``. Inside a running loop (sync code
    called directly from a coroutine) a loop cannot be nested, so the coroutine
    runs on a fresh loop in a helper thread while this thread waits.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
