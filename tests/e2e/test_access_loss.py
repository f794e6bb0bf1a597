"""Whoever loses the right stops listening, against the real stack (issue 11, items 1 and 4).

A listener in a live simulated call loses its right the ways an operator takes it away,
from another process; the app must have LiveKit remove it, the audit must say
revoked, and a token minted before the change must not stay in the room. The sweep
removes a revoked listener still in a room, for changes that bypassed the app.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import jwt
import pytest
from livekit import rtc

from anyreach_listen.access.policy import ORG_HEADER
from anyreach_listen.livekit.service import run_sync
from tests.e2e.listener import Listener
from tests.support.processes import wait_until
from tests.support.stack import Call, Stack, simulated_call

pytestmark = pytest.mark.e2e

LISTEN_SCOPE = "conversations:read_sensitive"

# What each case runs in `manage.py shell` (the user and credential names are filled in).
TAKE_AWAY = {
    "demoted": ("m = Membership.objects.get(user__username={user!r})\nm.role = 'viewer'\nm.save()"),
    "removed_from_team": "Membership.objects.get(user__username={user!r}).teams.clear()",
    "deactivated": ("u = User.objects.get(username={user!r})\nu.is_active = False\nu.save()"),
    "pat_deleted": "PersonalAccessToken.objects.get(name={credential!r}).delete()",
    "api_key_deleted": "ApiKey.objects.get(name={credential!r}).delete()",
}
PRELUDE = (
    "import json, time\n"
    "from django.contrib.auth.models import User\n"
    "from anyreach_listen.models import ApiKey, Membership, PersonalAccessToken, Team\n"
)


@pytest.fixture(scope="module")
def call(stack: Stack) -> Iterator[Call]:
    with simulated_call(stack, "--loop") as running:
        yield running


def _new_member(stack: Stack, name: str) -> str:
    """A supervisor of the demo team with a PAT that may listen; returns the PAT."""
    stack.manage(
        "shell",
        "-v",
        "0",
        "-c",
        PRELUDE + f"u = User.objects.create_user({name!r}, password=None)\n"
        "team = Team.objects.get(organization__slug='demo')\n"
        "m = Membership.objects.create(user=u, organization=team.organization, "
        "role='supervisor')\n"
        "m.teams.add(team)\n",
    )
    return stack.manage(
        "create_pat", name, "--name", f"pat-{name}", "--scope", LISTEN_SCOPE
    ).strip()


def _mint(stack: Stack, conversation_id: str, secret: str) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {secret}"}
    if secret.startswith("pat_"):
        headers[ORG_HEADER] = stack.seed["organization_id"]
    response = httpx.post(
        f"{stack.base_url}/core/conversations/{conversation_id}/listener-token",
        headers=headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    grant: dict[str, str] = response.json()
    return grant


def _revoked_at(stack: Stack, token: str) -> object:
    identity = jwt.decode(token, options={"verify_signature": False})["sub"]
    rows = stack.query(
        "SELECT revoked_at FROM anyreach_listen_listensession WHERE listener_identity = ?",
        identity,
    )
    return rows[0]["revoked_at"] if rows else None


async def _until(check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("case", list(TAKE_AWAY))
def test_losing_the_right_removes_the_live_listener(stack: Stack, call: Call, case: str) -> None:
    name = f"{case}-{uuid.uuid4().hex[:6]}"
    if case == "api_key_deleted":
        secret = stack.manage(
            "create_api_key", "demo", "--name", name, "--scope", LISTEN_SCOPE
        ).strip()
        credential = name
    else:
        secret = _new_member(stack, name)
        credential = f"pat-{name}"
    live = _mint(stack, call.conversation_id, secret)
    unused = _mint(stack, call.conversation_id, secret)  # minted, not yet redeemed
    script = PRELUDE + TAKE_AWAY[case].format(user=name, credential=credential)

    async def listen_then_take_away() -> int | None:
        listener = Listener(live["url"], live["token"])
        try:
            await asyncio.wait_for(listener.connect(), timeout=15)
            await _until(lambda: bool(listener.frames), timeout=30)  # really listening
            await asyncio.to_thread(stack.manage, "shell", "-v", "0", "-c", script)
            # A deadline for a hang, not a measure of the removal's speed.
            await asyncio.wait_for(listener.disconnected.wait(), timeout=10)
            return listener.disconnect_reason
        finally:
            await listener.close()

    # Removed by the app (RoomService), not dropped for any other reason.
    assert run_sync(listen_then_take_away()) == rtc.DisconnectReason.PARTICIPANT_REMOVED
    assert _revoked_at(stack, live["token"]) is not None
    assert _revoked_at(stack, unused["token"]) is not None

    async def try_the_unused_token() -> int | None:
        late = Listener(unused["url"], unused["token"])
        try:
            await asyncio.wait_for(late.connect(), timeout=15)
            # The participant_joined webhook finds the session revoked and removes it.
            await asyncio.wait_for(late.disconnected.wait(), timeout=10)
            return late.disconnect_reason
        finally:
            await late.close()

    assert run_sync(try_the_unused_token()) == rtc.DisconnectReason.PARTICIPANT_REMOVED


def test_the_sweep_removes_a_revoked_listener_still_in_the_room(stack: Stack, call: Call) -> None:
    grant = _mint(stack, call.conversation_id, stack.seed["api_keys"]["read_sensitive"])
    identity = jwt.decode(grant["token"], options={"verify_signature": False})["sub"]
    # A revocation that bypassed the app (no signal, no RoomService call).
    bypass = (
        "from django.utils import timezone\n"
        "from anyreach_listen.models import ListenSession\n"
        f"ListenSession.objects.filter(listener_identity={identity!r})"
        ".update(revoked_at=timezone.now())\n"
    )

    async def listen_then_sweep() -> tuple[str, bool]:
        listener = Listener(grant["url"], grant["token"])
        try:
            await asyncio.wait_for(listener.connect(), timeout=15)
            await _until(lambda: bool(listener.frames), timeout=30)
            await asyncio.to_thread(stack.manage, "shell", "-v", "0", "-c", bypass)
            out = await asyncio.to_thread(stack.manage, "sweep_listeners")
            await asyncio.wait_for(listener.disconnected.wait(), timeout=10)
            return out, listener.disconnected.is_set()
        finally:
            await listener.close()

    out, dropped = run_sync(listen_then_sweep())
    assert dropped
    assert "removed 1 lingering listener(s)" in out, out
    wait_until(
        lambda: _revoked_at(stack, grant["token"]) is not None,
        timeout=5,
        what="the session stays revoked",
    )
