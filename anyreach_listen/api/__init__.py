"""The REST API under ``/core/``: its views and what each needs of its caller
(``permissions``), the JSON bodies it reads and the shapes it answers with (``shapes``),
the error registry every error comes from, its OpenAPI document, and the limits on
request bodies (in the view and, earlier, as ASGI middleware).
"""
