"""Server-side calls to LiveKit's RoomService and AgentDispatchService, from sync and async code.

``livekit.api.LiveKitAPI`` is aiohttp-based: it is created inside a running event loop
and closed in it. ``run_sync`` runs a coroutine from synchronous code (views, the admin,
signal receivers) whether or not the calling thread already runs an event loop.
``perform_rpc`` calls RoomService.PerformRpc over Twirp with httpx: livekit-api 1.2.2
has no wrapper for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from livekit import api

from anyreach_listen.conf import listen_settings
from anyreach_listen.listening.minting import LISTENER_IDENTITY_PREFIX

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
                logger.exception("Could not remove %s from room %s", identity, room)
                results[identity] = None
    return results


async def list_listeners(rooms: Iterable[str]) -> dict[str, set[str]]:
    """The listener identities (``listener-`` prefix) in each room (none in a room that
    is not open)."""
    async with livekit_api() as client:
        return {
            room: {
                p.identity
                for p in await participants(room, client)
                if p.identity.startswith(LISTENER_IDENTITY_PREFIX)
            }
            for room in rooms
        }


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


# The attribute LiveKit's server sets on an agent job's participant: the worker's agent name.
AGENT_NAME_ATTRIBUTE = "lk.agent_name"
# Seconds a dispatch may take to put its agent in the room (a worker accepting the job,
# the agent connecting) before it counts as failed; a dispatch no worker took (it has
# no job: LiveKit had no free worker then, and never tries again) fails sooner.
DISPATCH_GRACE = 20.0
UNASSIGNED_GRACE = 5.0


def is_dispatched_agent(participant: api.ParticipantInfo, agent_name: str) -> bool:
    """A job's participant of the workers registered as ``agent_name``. Both marks come
    from LiveKit (the kind from the token it minted, the attribute set by the server)."""
    return (
        participant.kind == api.ParticipantInfo.Kind.AGENT
        and participant.attributes.get(AGENT_NAME_ATTRIBUTE) == agent_name
    )


@dataclass(frozen=True)
class Dispatched:
    """What ``ensure_agents`` found and did in one room."""

    room_open: bool
    present: int = 0  # agents of that name in the room
    created: int = 0  # new dispatches
    deleted: int = 0  # dispatches whose agent is gone (or never came)
    refused: bool = False  # ``accepts`` said no to the open room: nothing was done


async def ensure_agents(
    room: str,
    agent_name: str,
    count: int,
    metadata: str,
    client: api.LiveKitAPI,
    *,
    gone: Collection[str] = (),
    grace: float = DISPATCH_GRACE,
    accepts: Callable[[api.Room], bool] | None = None,
) -> Dispatched:
    """Make ``count`` dispatches of ``agent_name`` live in ``room`` (an open room only).

    A dispatch is live while the participant of one of its jobs is in the room, or
    for ``grace`` seconds after it was created (its agent is joining) unless its
    participant is known to have left (``gone``: identities a webhook saw leave);
    one with no job for ``UNASSIGNED_GRACE`` seconds (no worker took it) is not.
    ``accepts``: whether the open room may get agents at all (its metadata).
    Other dispatches (the agent died or left, or no worker took the job) are
    deleted, so a room's dispatches do not pile up, and replaced. LiveKit's server
    (v1.13) never re-dispatches a job whose worker went away.
    """
    rooms = await client.room.list_rooms(api.ListRoomsRequest(names=[room]))
    if not rooms.rooms:
        # Not open (yet): a dispatch would create it. room_started dispatches then.
        return Dispatched(room_open=False)
    if accepts is not None and not accepts(rooms.rooms[0]):
        return Dispatched(room_open=True, refused=True)
    participants = await client.room.list_participants(api.ListParticipantsRequest(room=room))
    present = {p.identity for p in participants.participants if is_dispatched_agent(p, agent_name)}
    now = time.time_ns()
    live, deleted = 0, 0
    for dispatch in await client.agent_dispatch.list_dispatch(room):
        if dispatch.agent_name != agent_name:
            continue
        identities = {job.state.participant_identity for job in dispatch.state.jobs} - {""}
        if dispatch.metadata != metadata:
            # Dispatched for another conversation (the room was reused or changed hands):
            # its agent would store this call under that one, so it leaves.
            for identity in identities & present:
                await remove_participant(room, identity, client)
            deleted += await _delete_dispatch(dispatch.id, room, client)
            continue
        age = (now - dispatch.state.created_at) / 1e9
        starting = not identities & set(gone) and (
            age < UNASSIGNED_GRACE or (bool(identities) and age < grace)
        )
        if identities & present or starting:
            live += 1
            continue
        deleted += await _delete_dispatch(dispatch.id, room, client)
    created = 0
    for _ in range(count - live):
        await client.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(room=room, agent_name=agent_name, metadata=metadata)
        )
        created += 1
    return Dispatched(room_open=True, present=len(present), created=created, deleted=deleted)


async def _delete_dispatch(dispatch_id: str, room: str, client: api.LiveKitAPI) -> int:
    """Delete a dispatch; 1, or 0 when it was gone already."""
    try:
        await client.agent_dispatch.delete_dispatch(dispatch_id, room)
    except api.TwirpError as exc:
        if not _is_not_found(exc):
            raise
        return 0
    return 1


async def participants(
    room: str, client: api.LiveKitAPI | None = None, *, timeout: float = REQUEST_TIMEOUT
) -> list[api.ParticipantInfo]:
    """Who is in ``room`` now (none when the room is not open), asked through ``client``,
    or a client of its own given ``timeout`` seconds in all (else ``TimeoutError``)."""
    if client is None:
        async with asyncio.timeout(timeout), livekit_api() as own:
            return await participants(room, own)
    try:
        response = await client.room.list_participants(api.ListParticipantsRequest(room=room))
    except api.TwirpError as exc:
        if _is_not_found(exc):
            return []
        raise
    return list(response.participants)


# Seconds the HTTP call may outlast the RPC's own timeout, so LiveKit answers first.
RPC_SLACK = 2.0


class RpcFailed(Exception):
    """PerformRpc brought back no answer; ``str()`` says why, in words for an audit row;
    ``code``: the RPC error's (1400 method not supported, 1502 response timeout, …) if any."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.code = code


# How LiveKit's server words a participant's RPC error inside its Twirp error.
_RPC_ERROR = re.compile(r"RpcError (\d+): (.*)", re.DOTALL)


def room_admin_token(room: str) -> str:
    grants = api.VideoGrants(room_admin=True, room=room)
    key, secret = listen_settings.LIVEKIT_API_KEY, listen_settings.LIVEKIT_API_SECRET
    return api.AccessToken(key, secret).with_grants(grants).to_jwt()


def perform_rpc(
    room: str, identity: str, method: str, payload: str, *, timeout_ms: int = 5000
) -> str:
    """Call ``method``, registered by participant ``identity`` in ``room``, through
    RoomService.PerformRpc (LiveKit ≥ 1.9.2); its answer, or ``RpcFailed``: LiveKit
    unreachable, no answer within ``timeout_ms``, a method not registered, an error raised."""
    url = f"{listen_settings.livekit_api_url.rstrip('/')}/twirp/livekit.RoomService/PerformRpc"
    body = {
        "room": room,
        "destination_identity": identity,
        "method": method,
        "payload": payload,
        "response_timeout_ms": timeout_ms,
    }
    headers = {"Authorization": f"Bearer {room_admin_token(room)}"}
    timeout = httpx.Timeout(timeout_ms / 1000 + RPC_SLACK, connect=REQUEST_TIMEOUT)
    try:
        response = httpx.post(url, json=body, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        raise RpcFailed(f"no answer within {timeout_ms} ms") from None
    except httpx.HTTPError as exc:
        raise RpcFailed(f"LiveKit could not be reached ({type(exc).__name__})") from None
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise RpcFailed(f"LiveKit answered HTTP {response.status_code}")
    if response.status_code != 200:
        # A Twirp error: {"code", "msg"}; a participant's RPC error is in msg.
        message = str(data.get("msg", ""))
        rpc_error = _RPC_ERROR.search(message)
        if rpc_error is not None:
            raise RpcFailed(rpc_error.group(0)[:500], int(rpc_error.group(1)))
        raise RpcFailed(f"{data.get('code', response.status_code)}: {message}"[:500])
    return str(data.get("payload", ""))


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
