"""demo/call_simulator.py: who the simulated call's participants are to LiveKit.

The transcript role a listener sees comes from the participant's kind, which only
the token's signer (the platform) sets: the agent's token says AGENT, the caller's
says nothing (STANDARD) and grants nothing that makes it an agent.
"""

from __future__ import annotations

from typing import Any

import jwt

from demo.call_simulator import CallConfig, _token

CONFIG = CallConfig(url="ws://127.0.0.1:7880", api_key="k", api_secret="s" * 32, room_name="r")


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, "s" * 32, algorithms=["HS256"])
    return claims


def test_the_agent_is_of_kind_agent_and_the_caller_is_not() -> None:
    agent = _claims(_token(CONFIG, CONFIG.agent_identity, CONFIG.agent_name, agent=True))
    caller = _claims(_token(CONFIG, CONFIG.caller_identity, CONFIG.caller_name, agent=False))
    assert agent["kind"] == "agent"
    assert caller.get("kind", "standard") == "standard"
    # livekit-client's isAgent also reads the deprecated `agent` video grant.
    assert not caller["video"].get("agent")
    assert caller["video"]["roomJoin"] and caller["video"]["room"] == "r"
