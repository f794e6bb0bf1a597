"""Access: who is asking and what they may do.

The policy (``policy``) answers "may this person or credential see, listen to, manage
this call?"; around it the credentials it trusts, the roles and scopes it reads, the
rate limits it applies, the client address and embed origins it checks.
"""
