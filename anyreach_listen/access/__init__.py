"""Access: who is asking and what they may do. ``policy`` answers "may this person or
credential see, listen to, manage this call?" from the capability table (``roles``);
around it the credentials, rate limits, client address and embed origins it checks.
"""
