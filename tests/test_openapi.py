"""The OpenAPI 3.1 document, checked by a real validator."""

from __future__ import annotations

from django.test import Client
from openapi_spec_validator import validate

from anyreach_listen.errors import API, Errors


def test_document_is_valid_openapi_31(client: Client) -> None:
    response = client.get("/core/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on any schema violation

    operation = document["paths"]["/core/conversations/{conversation_id}/listener-token"]["post"]
    assert {"apiKey", "personalAccessToken"} <= set(document["components"]["securitySchemes"])
    assert any(
        p["name"] == "X-Anyreach-Org" and p["in"] == "header" for p in operation["parameters"]
    )
    assert set(operation["responses"]) == {
        "200", "400", "401", "403", "404", "405", "409", "429", "500"
    }  # fmt: skip


def test_the_error_tables_come_from_the_registry(client: Client) -> None:
    document = client.get("/core/openapi.json").json()
    error = document["components"]["schemas"]["Error"]["properties"]["error"]
    assert set(error["properties"]["code"]["enum"]) == {e.code for e in Errors.on(API)}
    described = " ".join(
        response["description"]
        for path in document["paths"].values()
        for operation in path.values()
        for status, response in operation["responses"].items()
        if not status.startswith("2")
    )
    for kind in Errors.on(API):
        if kind.code in ("not_found", "internal_error"):  # any path, not one operation
            continue
        assert f"`{kind.code}`" in described, kind.code


def test_each_error_response_lists_exactly_its_codes(client: Client) -> None:
    document = client.get("/core/openapi.json").json()
    mint = document["paths"]["/core/conversations/{conversation_id}/listener-token"]["post"]

    def codes(status: str) -> list[str]:
        schema = mint["responses"][status]["content"]["application/json"]["schema"]
        assert schema["allOf"] == [{"$ref": "#/components/schemas/Error"}]
        return list(schema["properties"]["error"]["properties"]["code"]["enum"])

    assert codes("404") == ["conversation_not_found", "room_not_found"]
    assert codes("409") == ["conversation_not_active"]
    assert codes("500") == ["internal_error"]
    org = next(p for p in mint["parameters"] if p["name"] == "X-Anyreach-Org")
    assert {"type": "string", "maxLength": 0} in org["schema"]["anyOf"]  # empty: absent
