"""The API's one error format: ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse


class ApiError(Exception):
    """Raised anywhere in an API view; turned into a JSON response by ``as_response``."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def as_response(self) -> JsonResponse:
        return error_response(self.status, self.code, self.message, self.headers)


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JsonResponse:
    response = JsonResponse({"error": {"code": code, "message": message}}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def api_not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """Catch-all for unknown API paths, so they answer in the same format."""
    return error_response(404, "not_found", "No API endpoint at this path.")
