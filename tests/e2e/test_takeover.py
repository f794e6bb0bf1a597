"""Taking a live call over from its AI agent and handing it back, on the real stack (issue 20).

A simulated call (its agent obeys signed pause and resume orders), a recorder, LiveKit's
real webhooks and the REST API with keys holding ``conversations:take_over``. A supervisor
joins with the takeover token and speaks (a tone); a hidden listener hears them and no
longer the agent, while the caller's words are still transcribed; a second takeover is
refused; and each way a takeover ends (hand-back, the supervisor gone, the right lost,
the token expired, the call over) takes the supervisor out and, but for the last, gives
the call back to an agent that speaks again.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest

from demo.call_simulator import CallConfig
from tests.support.guidance import LoopThread, TimedListener, api_key, connected_listener
from tests.support.processes import wait_until
from tests.support.stack import Call, Stack, recorders, simulated_call
from tests.support.takeover import Supervisor, joined_supervisor, takeover

pytestmark = [
    pytest.mark.e2e,
    # The dev server's secret ("secret") is short; production's is checked (E002).
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

AGENT = CallConfig.agent_identity
CALLER = CallConfig.caller_identity
TAKE_OVER, READ_SENSITIVE = "conversations:take_over", "conversations:read_sensitive"
STEP = 60  # seconds any one condition below may take (a script turn is a few seconds)


@dataclass
class LiveCall:
    stack: Stack
    call: Call
    loop: LoopThread
    listener: TimedListener

    @property
    def conversation_id(self) -> str:
        return self.call.conversation_id

    def row(self, takeover_id: str) -> dict[str, Any]:
        (row,) = self.stack.query(
            "SELECT * FROM anyreach_listen_takeover WHERE id = ?", takeover_id.replace("-", "")
        )
        return dict(row)

    def heard_after(self, identity: str, moment: float) -> float | None:
        return self.listener.first_audible_after(identity, moment)

    def new_finals(self, identity: str, before: set[str]) -> list[str]:
        """Segment ids of ``identity`` heard final that were not in ``before``."""
        return [
            h.segment_id
            for h in list(self.listener.heard)
            if h.participant == identity and h.final and h.segment_id not in before
        ]

    def segment_ids(self, identity: str) -> set[str]:
        return {h.segment_id for h in list(self.listener.heard) if h.participant == identity}


@contextlib.contextmanager
def _live_call(stack: Stack, *args: str) -> Iterator[LiveCall]:
    """A looping simulated call, recorded, with a hidden listener (an API listen session)."""
    reader = api_key(stack, f"reader-{uuid.uuid4().hex[:6]}", READ_SENSITIVE)
    with (
        recorders(stack, 1) as pool,
        simulated_call(stack, "--loop", *args) as call,
        LoopThread() as loop,
    ):
        wait_until(lambda: pool.recording(call.room_name), timeout=STEP, what="the recorder")
        grant = stack.mint(call.conversation_id, reader)
        assert grant.status_code == 200, grant.text
        listener = loop.run(connected_listener(grant.json()["url"], grant.json()["token"]))
        try:
            yield LiveCall(stack, call, loop, listener)
        finally:
            loop.run(listener.close())


@pytest.fixture(scope="module")
def live(stack: Stack) -> Iterator[LiveCall]:
    with _live_call(stack) as call:
        yield call


def _take_over(live: LiveCall, key: str) -> tuple[dict[str, Any], Supervisor]:
    """A takeover started with ``key`` and its supervisor in the room, speaking."""
    response = takeover(live.stack, "POST", live.conversation_id, key)
    assert response.status_code == 201, response.text
    grant = response.json()
    supervisor = live.loop.run(joined_supervisor(grant["url"], grant["token"]))
    return grant, supervisor


def _supervisor_identity(grant: dict[str, Any]) -> str:
    identity = jwt.decode(grant["token"], options={"verify_signature": False})["sub"]
    assert identity.startswith("supervisor-"), identity
    return str(identity)


def _agent_speaks_again(live: LiveCall, since: float) -> None:
    wait_until(lambda: live.heard_after(AGENT, since), timeout=STEP, what="the agent's voice again")


def _resumed(live: LiveCall, takeover_id: str) -> dict[str, Any]:
    return wait_until(
        lambda: (row := live.row(takeover_id))["resumed_at"] and row,
        timeout=STEP,
        interval=0.2,
        what="the agent's resume recorded",
    )


def test_the_supervisor_is_heard_instead_of_the_agent_until_the_hand_back(
    live: LiveCall,
) -> None:
    stack = live.stack
    name = f"ana-{uuid.uuid4().hex[:6]}"
    key = api_key(stack, name, TAKE_OVER)
    other = api_key(stack, f"bo-{uuid.uuid4().hex[:6]}", TAKE_OVER)
    # The agent is heard before.
    wait_until(lambda: live.heard_after(AGENT, 0), timeout=STEP, what="the agent speaking")

    grant, supervisor = _take_over(live, key)
    assert grant["room_name"] == live.call.room_name
    identity = _supervisor_identity(grant)
    try:
        # The hidden listener hears the supervisor...
        heard = wait_until(
            lambda: live.heard_after(identity, 0), timeout=STEP, what="the supervisor heard"
        )
        agent_lines = live.segment_ids(AGENT)
        # ...and the caller is still transcribed (two whole lines from now on) while the
        # agent says nothing: no audible frame and no new line of it in that time.
        caller_lines = live.segment_ids(CALLER)
        wait_until(
            lambda: len(live.new_finals(CALLER, caller_lines)) >= 2,
            timeout=2 * STEP,
            what="two caller lines transcribed during the takeover",
        )
        assert live.heard_after(AGENT, heard) is None
        assert live.segment_ids(AGENT) == agent_lines

        # One holder at a time: another key is told who has it.
        refused = takeover(stack, "POST", live.conversation_id, other)
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["code"] == "already_taken_over" and name in error["message"], error
        # The holder's participant joined, as LiveKit's webhook said.
        state = wait_until(
            lambda: (
                (r := takeover(stack, "GET", live.conversation_id, key).json()).get("joined_at")
                and r
            ),
            timeout=STEP,
            interval=0.5,
            what="the supervisor's join recorded",
        )
        assert state["id"] == grant["id"] and state["ended_at"] is None, state

        handed = takeover(stack, "DELETE", live.conversation_id, key)
        assert handed.status_code == 200, handed.text
        ended = handed.json()
        assert (ended["id"], ended["ended_by"]) == (grant["id"], "handed_back"), ended
        back = time.monotonic()
        # Out of the room, and the agent speaks again, its resume on record.
        wait_until(supervisor.removed.is_set, timeout=STEP, what="the supervisor removed")
        _agent_speaks_again(live, back)
        assert _resumed(live, grant["id"])["resume_error"] == ""
        gone = takeover(stack, "GET", live.conversation_id, key)
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "takeover_not_found"
    finally:
        live.loop.run(supervisor.close())


def test_one_without_the_scope_cannot_take_over(live: LiveCall) -> None:
    reader = api_key(live.stack, f"qa-{uuid.uuid4().hex[:6]}", READ_SENSITIVE)
    refused = takeover(live.stack, "POST", live.conversation_id, reader)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "insufficient_scope"
    assert not live.stack.query(
        "SELECT id FROM anyreach_listen_takeover WHERE ended_at IS NULL AND conversation_id = ?",
        live.conversation_id.replace("-", ""),
    )


def _shell(stack: Stack, code: str) -> None:
    stack.manage("shell", "-c", code)


def _age(stack: Stack, takeover_id: str, column: str) -> None:
    """Move ``column`` of the takeover 31 s into the past: what the 30 s rule and the
    token's expiry wait for, without the wait."""
    _shell(
        stack,
        "import datetime as dt; from django.utils import timezone; "
        "from anyreach_listen.models import Takeover; "
        f"Takeover.objects.filter(pk='{takeover_id}').update("
        f"{column}=timezone.now() - dt.timedelta(seconds=31))",
    )


@pytest.mark.parametrize("way", ["left", "expired", "access_lost"])
def test_each_way_a_takeover_ends_takes_the_supervisor_out_and_resumes_the_agent(
    live: LiveCall, way: str
) -> None:
    stack = live.stack
    name = f"sup-{way}-{uuid.uuid4().hex[:6]}"
    key = api_key(stack, name, TAKE_OVER)
    grant, supervisor = _take_over(live, key)
    identity = _supervisor_identity(grant)
    try:
        wait_until(lambda: live.heard_after(identity, 0), timeout=STEP, what="the supervisor")
        if way == "left":
            live.loop.run(supervisor.close())
            wait_until(
                lambda: live.row(grant["id"])["left_at"],
                timeout=STEP,
                interval=0.2,
                what="LiveKit's participant_left recorded",
            )
            _age(stack, grant["id"], "left_at")
            stack.manage("sweep_listeners")
        elif way == "expired":
            _age(stack, grant["id"], "expires_at")
            stack.manage("sweep_listeners")
        else:
            stack.manage("revoke_api_key", name, "--organization", "demo")
        ended_at = time.monotonic()
        row = wait_until(
            lambda: (r := live.row(grant["id"]))["ended_at"] and r,
            timeout=STEP,
            interval=0.2,
            what="the takeover ended",
        )
        assert row["ended_by"] == way, row
        if way != "left":
            wait_until(supervisor.removed.is_set, timeout=STEP, what="the supervisor removed")
        _agent_speaks_again(live, ended_at)
        assert _resumed(live, grant["id"])["resume_error"] == ""
    finally:
        live.loop.run(supervisor.close())


def test_the_call_ending_ends_the_takeover_without_a_resume(stack: Stack) -> None:
    key = api_key(stack, f"sup-end-{uuid.uuid4().hex[:6]}", TAKE_OVER)
    with _live_call(stack) as live:
        grant, supervisor = _take_over(live, key)
        try:
            identity = _supervisor_identity(grant)
            wait_until(lambda: live.heard_after(identity, 0), timeout=STEP, what="the supervisor")
            stack.manage("shell", "-c", _end_call(live.conversation_id))
            row = wait_until(
                lambda: (r := live.row(grant["id"]))["ended_at"] and r,
                timeout=STEP,
                interval=0.2,
                what="the takeover ended with the call",
            )
            assert row["ended_by"] == "call_ended" and row["resumed_at"] is None, row
            wait_until(supervisor.removed.is_set, timeout=STEP, what="the supervisor removed")
        finally:
            live.loop.run(supervisor.close())


def _end_call(conversation_id: str) -> str:
    """The platform ending the call (as its PATCH would), through the one writer."""
    return (
        "from anyreach_listen import conversations; "
        "from anyreach_listen.models import Conversation; "
        f"conversations.finish(Conversation.objects.get(pk='{conversation_id}'))"
    )
