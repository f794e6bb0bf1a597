"""Acting on a call (Agent Assist): who is listening now (``presence``), and guidance to
the AI agent (``guidance``: audited, then signed and relayed over LiveKit's server-side
RPC; ``signing``: the order both sides share).
"""
