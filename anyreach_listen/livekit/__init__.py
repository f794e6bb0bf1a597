"""LiveKit, the media server calls run on: server-side API calls, its verified
webhooks, who owns a room, calls registered from rooms alone, and reconciliation
when a room is gone without a word.
"""
