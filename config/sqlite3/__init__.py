"""SQLite for the embedded setup, its connections kept from one request for the next
(``base.py``)."""
