"""The OpenAPI 3.1 document, checked by a real validator."""

from __future__ import annotations

import re
from pathlib import Path

from django.test import Client
from openapi_spec_validator import validate

from anyreach_listen import api, credentials, minting, ratelimit


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
    assert set(operation["responses"]) == {"200", "400", "401", "403", "404", "405", "409", "429"}


def test_every_error_code_raised_is_documented(client: Client) -> None:
    document = client.get("/core/openapi.json").json()
    error = document["components"]["schemas"]["Error"]["properties"]["error"]
    documented = set(error["properties"]["code"]["enum"])
    source = "".join(
        Path(module.__file__).read_text()  # type: ignore[arg-type]
        for module in (api, credentials, minting, ratelimit)
    )
    raised = set(re.findall(r'(?:ApiError|error_response)\(\s*\d+,\s*"([a-z_]+)"', source)) | set(
        re.findall(r'(?:CredentialError|_unauthorized)\(\s*"([a-z_]+)"', source)
    )
    assert len(raised) >= 14
    assert raised <= documented
