"""The error registry and the endpoint wrapper: every answer under /core/ is JSON."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from django.test import Client

from anyreach_listen.access import policy as access
from anyreach_listen.api.errors import API, Errors, markdown_table
from tests.support.world import World

ERRORS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "api" / "errors.md"


def test_codes_are_unique_and_every_entry_is_described() -> None:
    kinds = list(Errors.all())
    assert len(kinds) >= 20
    assert not [code for code, n in Counter(k.code for k in kinds).items() if n > 1]
    for kind in kinds:
        assert 400 <= kind.status <= 599 and kind.message and kind.when and kind.surfaces


def test_readme_error_table_is_generated_from_the_registry() -> None:
    assert markdown_table(API) in ERRORS_PAGE.read_text()


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
def test_unknown_core_paths_answer_json_whatever_the_method(db: None, method: str) -> None:
    # enforce_csrf_checks: a browser-like POST used to get Django's HTML CSRF page.
    client = Client(enforce_csrf_checks=True)
    response = getattr(client, method)("/core/no/such/thing")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"


def test_wrong_method_on_a_core_endpoint_is_json_405(db: None) -> None:
    response = Client(enforce_csrf_checks=True).post("/core/openapi.json")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_unexpected_exception_is_a_json_500_without_traceback(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(request: object) -> None:
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr(access, "for_api_request", explode)
    client = Client(raise_request_exception=True)
    response = client.post(
        f"/core/conversations/{world.conversations['ringing'].pk}/listener-token"
    )
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": Errors.INTERNAL_ERROR.message}
    }
    assert b"hunter2" not in response.content and b"Traceback" not in response.content
