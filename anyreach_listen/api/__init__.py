"""The REST API under ``/core/``: its views, the JSON bodies it reads and answers
with, the error registry every answer comes from, its OpenAPI document, and the
limits on request bodies (in the view and, earlier, as ASGI middleware).
"""
