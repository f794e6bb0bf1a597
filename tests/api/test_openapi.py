"""The OpenAPI 3.1 document, checked by a real validator."""

from __future__ import annotations

from django.test import Client
from openapi_spec_validator import validate

from anyreach_listen.api.errors import API, Errors


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


AUTH_401 = [
    "missing_credentials",
    "invalid_credentials",
    "credentials_revoked",
    "credentials_expired",
]
AUTH_400 = ["missing_organization", "invalid_organization"]
AUTH_403 = ["organization_mismatch", "not_a_member", "insufficient_scope"]
BODY_400 = [*AUTH_400, "invalid_json", "unknown_field", "invalid_field"]


def test_transcript_and_alert_operations_list_exactly_their_errors(client: Client) -> None:
    paths = client.get("/core/openapi.json").json()["paths"]

    def errors(path: str, method: str) -> dict[str, list[str]]:
        responses = paths[path][method]["responses"]
        return {
            status: response["content"]["application/json"]["schema"]["properties"]["error"][
                "properties"
            ]["code"]["enum"]
            for status, response in responses.items()
            if not status.startswith("2")
        }

    common = {
        "401": AUTH_401,
        "405": ["method_not_allowed"],
        "429": ["rate_limited"],
        "500": ["internal_error"],
    }
    transcript = "/core/conversations/{conversation_id}/transcript"
    assert errors(transcript, "post") == {
        **common,
        "400": BODY_400,
        "403": AUTH_403,
        "404": ["conversation_not_found"],
        "409": ["transcript_closed"],
        "413": ["payload_too_large"],
        "415": ["unsupported_media_type"],
    }
    # Pages: a query parameter other than limit and cursor is unknown_field, a limit out
    # of range or a cursor not given out invalid_field.
    page_400 = [*AUTH_400, "unknown_field", "invalid_field"]
    read = {**common, "400": page_400, "403": AUTH_403, "404": ["conversation_not_found"]}
    assert errors(transcript, "get") == read
    assert errors("/core/conversations/{conversation_id}/alerts", "get") == read
    assert errors("/core/alert-rules", "post") == {
        **common,
        "400": [*BODY_400, "invalid_team"],
        "403": AUTH_403,
        "409": ["too_many_rules"],
        "413": ["payload_too_large"],
        "415": ["unsupported_media_type"],
    }
    assert errors("/core/alert-rules", "get") == {**common, "400": page_400, "403": AUTH_403}
    assert errors("/core/alert-rules/{rule_id}", "delete") == {
        **common,
        "400": AUTH_400,
        "403": AUTH_403,
        "404": ["alert_rule_not_found"],
    }
    assert set(paths[transcript]["get"]["responses"]) >= {"200"}
    assert paths[transcript]["post"]["requestBody"]["required"] is True


def test_the_paginated_reads_document_limit_cursor_and_next(client: Client) -> None:
    document = client.get("/core/openapi.json").json()
    paths, schemas = document["paths"], document["components"]["schemas"]
    for path in (
        "/core/conversations/{conversation_id}/transcript",
        "/core/conversations/{conversation_id}/alerts",
        "/core/alert-rules",
    ):
        parameters = {p["name"]: p for p in paths[path]["get"]["parameters"]}
        assert parameters["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 500}
        assert parameters["cursor"]["in"] == "query"
    for name in ("Transcript", "AlertList", "AlertRuleList"):
        assert schemas[name]["properties"]["next"]["type"] == ["string", "null"]
        assert "next" in schemas[name]["required"]


def test_the_takeover_operations_list_exactly_their_errors(client: Client) -> None:
    document = client.get("/core/openapi.json").json()
    path = document["paths"]["/core/conversations/{conversation_id}/takeover"]
    assert set(path) == {"post", "get", "delete"}

    def errors(method: str) -> dict[str, list[str]]:
        return {
            status: response["content"]["application/json"]["schema"]["properties"]["error"][
                "properties"
            ]["code"]["enum"]
            for status, response in path[method]["responses"].items()
            if not status.startswith("2")
        }

    common = {
        "400": AUTH_400,
        "401": AUTH_401,
        "403": AUTH_403,
        "405": ["method_not_allowed"],
        "429": ["rate_limited"],
        "500": ["internal_error"],
    }
    assert errors("post") == {
        **common,
        # No fields: a body can be unknown_field, never invalid_field.
        "400": [*AUTH_400, "invalid_json", "unknown_field"],
        "404": ["conversation_not_found", "takeover_not_found"],
        "409": ["conversation_not_active", "agent_not_present", "already_taken_over"],
        "413": ["payload_too_large"],
        "415": ["unsupported_media_type"],
        "502": ["takeover_not_confirmed"],
    }
    held = {**common, "404": ["conversation_not_found", "takeover_not_found"]}
    assert errors("get") == held
    assert errors("delete") == held
    ok = {
        method: {
            status: response["content"]["application/json"]["schema"]["$ref"]
            for status, response in path[method]["responses"].items()
            if status.startswith("2")
        }
        for method in path
    }
    schemas = "#/components/schemas/"
    assert ok == {
        "post": {"201": f"{schemas}TakeoverToken", "200": f"{schemas}TakeoverToken"},
        "get": {"200": f"{schemas}Takeover"},
        "delete": {"200": f"{schemas}Takeover"},
    }
    # The POST's body is optional and takes no fields.
    body = path["post"]["requestBody"]
    assert body["required"] is False
    assert body["content"]["application/json"]["schema"] == {"$ref": f"{schemas}TakeoverCreate"}
    create = document["components"]["schemas"]["TakeoverCreate"]
    assert (create["properties"], create["additionalProperties"]) == ({}, False)
    token = document["components"]["schemas"]["TakeoverToken"]
    assert set(token["required"]) == {"id", "url", "token", "room_name", "expires_at"}
    assert "conversations:take_over" in path["post"]["description"]
