"""A room belongs to the organization its LiveKit metadata names, on the real stack.

An organization that registers a room name first cannot squat a room the platform then
starts for another (its metadata, written with the LiveKit secret, names the owner):
the owner gets the call and its transcript, and the squatter gets no token, no stored
line, no second claim and no lasting seat in the room. A room LiveKit reports as another
organization's is refused even before any conversation exists.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from livekit import api

from anyreach_listen.livekit.service import livekit_api, run_sync
from tests.e2e.listener import Listener
from tests.e2e.rogue import RogueCaller
from tests.support.processes import wait_until
from tests.support.stack import Stack, recorders

pytestmark = pytest.mark.e2e

SAID = "my card is 4111"


def _api(stack: Stack, method: str, path: str, key: str, body: Any = None) -> httpx.Response:
    return httpx.request(
        method,
        f"{stack.base_url}/core{path}",
        headers={"Authorization": f"Bearer {key}"},
        json=body,
        timeout=10,
    )


def _open_room(stack: Stack, room: str, owner: dict[str, str]) -> None:
    """The platform starts ``room`` with metadata naming its owner (LiveKit's secret)."""

    async def create() -> None:
        lk = stack.livekit
        async with livekit_api(lk.http_url, lk.api_key, lk.api_secret) as client:
            metadata = json.dumps({"anyreach": owner})
            await client.room.create_room(
                api.CreateRoomRequest(name=room, metadata=metadata, empty_timeout=60)
            )

    run_sync(create())


def _said(stack: Stack, conversation_id: str, key: str) -> list[str]:
    response = _api(stack, "get", f"/conversations/{conversation_id}/transcript", key)
    assert response.status_code == 200, response.text
    return [segment["text"] for segment in response.json()["segments"]]


def test_the_platforms_organization_gets_the_room_a_squatter_registered(stack: Stack) -> None:
    slug = f"bravo-{time.monotonic_ns()}"
    bravo = stack.manage("create_organization", "Bravo", "--slug", slug).strip()
    bravo_key = stack.manage(
        "create_api_key", slug, "--name", "platform", "--scope", "conversations:manage"
    ).strip()
    acme_key = stack.seed["api_keys"]["manage"]
    room = f"call-{slug}"

    claimed = _api(stack, "post", "/conversations", acme_key, {"room_name": room})
    assert claimed.status_code == 201, claimed.text
    squatter = claimed.json()["id"]
    minted = stack.mint(squatter, acme_key)
    assert minted.status_code == 200, minted.text

    with recorders(stack, 1) as pool:
        _open_room(stack, room, {"organization_id": bravo})
        with RogueCaller(stack.livekit, room) as caller:
            owner = wait_until(
                lambda: stack.query(
                    "SELECT id FROM anyreach_listen_conversation WHERE livekit_room = ? "
                    "AND status = 'in_progress' AND organization_id = ?",
                    room,
                    bravo.replace("-", ""),
                ),
                timeout=10,
                what="Bravo's conversation registered from the room's metadata",
            )
            bravo_call = str(owner[0]["id"])
            lost = _api(stack, "get", f"/conversations/{squatter}", acme_key).json()
            assert lost["status"] == "failed"
            assert lost["room_name"] is None
            revoked = stack.query(
                "SELECT revoked_at FROM anyreach_listen_listensession WHERE conversation_id = ?",
                squatter.replace("-", ""),
            )
            assert [row["revoked_at"] is not None for row in revoked] == [True]

            wait_until(lambda: pool.recording(room), timeout=30, what="Bravo's recorder")
            caller.stream("seg-1", SAID)
            wait_until(
                lambda: SAID in _said(stack, bravo_call, bravo_key),
                timeout=15,
                interval=0.5,  # within the read rate limit
                what="the caller's words in Bravo's transcript",
            )

            assert _said(stack, squatter, acme_key) == []
            refused = stack.mint(squatter, acme_key)
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"]["code"] == "conversation_not_active"
            again = _api(stack, "post", "/conversations", acme_key, {"room_name": room})
            # LiveKit says whose it is: that decides before the rows do.
            assert again.status_code == 403, again.text
            assert again.json()["error"]["code"] == "room_not_owned"
            # The token Acme got before the loss opens the room, and is taken out again.
            assert run_sync(_joins_and_is_removed(minted.json()))


async def _joins_and_is_removed(grant: dict[str, Any]) -> bool:
    listener = Listener(grant["url"], grant["token"])
    try:
        await asyncio.wait_for(listener.connect(), timeout=15)
        await asyncio.wait_for(listener.disconnected.wait(), timeout=10)
        return True
    finally:
        await listener.close()


def test_a_room_livekit_says_is_another_organizations_is_refused(stack: Stack) -> None:
    slug = f"bravo-{time.monotonic_ns()}"
    bravo = stack.manage("create_organization", "Bravo", "--slug", slug).strip()
    room = f"call-{slug}"
    # A team that is not Bravo's: the webhook does not register it (logged), so only
    # LiveKit's metadata tells whose the room is.
    _open_room(stack, room, {"organization_id": bravo, "team_id": stack.seed["team_id"]})
    refused = _api(
        stack, "post", "/conversations", stack.seed["api_keys"]["manage"], {"room_name": room}
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "room_not_owned"
