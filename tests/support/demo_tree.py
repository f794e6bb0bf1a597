"""The demo's process tree seen from outside: its LiveKit ports, its rooms, its processes
(shared by the demo's tests and the memory benchmark)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path

from livekit import api

from demo.devserver import DEV_API_KEY, DEV_API_SECRET
from tests.support.processes import free_port, tcp_port_free, udp_port_free


def livekit_ports() -> int:
    """A port P with P (HTTP), P + 1 (ICE/TCP) and P + 2 (ICE/UDP) free, as run_demo uses them."""
    for _ in range(50):
        port = free_port()
        if port + 2 < 65536 and tcp_port_free(port + 1) and udp_port_free(port + 2):
            return port
    raise RuntimeError("no three consecutive free ports")


def live_rooms(url: str) -> list[int]:
    """Participants in each room of the LiveKit server at ``url``."""

    async def rooms() -> list[int]:
        async with api.LiveKitAPI(url, DEV_API_KEY, DEV_API_SECRET) as client:
            listed = await client.room.list_rooms(api.ListRoomsRequest())
            return [room.num_participants for room in listed.rooms]

    # In a thread of its own: a browser test may already run a loop in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, rooms()).result(timeout=10)


def demo_processes(marker: bytes) -> dict[int, str]:
    """pid -> command line of every live process whose environment holds ``marker``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "environ").read_bytes():
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                continue  # a zombie: gone, waiting to be reaped
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        found[int(entry.name)] = argv.strip()
    return found
