"""Access: who is asking and what they may do.

The policy (``policy``) answers "may this person or credential see, listen to, manage
this call?"; around it the credentials it trusts, the capability table it reads (which
roles and API scopes may do what: ``roles``), the rate limits it applies, the client
address and embed origins it checks.
"""
