"""The AI agent's side of Agent Assist, for a customer's livekit-agents worker (the optional
``agent`` extra): ``enable_guidance(session, room)`` lets supervisors whisper to the agent,
make it say something now, and take its call over (pause it, then hand the call back).
Never imported by the server.
"""

from anyreach_listen.agent.guidance import enable_guidance

__all__ = ["enable_guidance"]
