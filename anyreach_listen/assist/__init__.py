"""Acting on a call (Agent Assist): who is listening now (``presence``), guidance to
the AI agent (``guidance``: audited, then signed and relayed over LiveKit's server-side
RPC; ``signing``: the order both sides share), and taking a call over from the agent and
handing it back (``takeover``: the agent paused, then resumed with the lines said meanwhile).
"""
