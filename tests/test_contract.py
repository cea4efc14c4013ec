"""The contract as partners' tools and operators see it: response headers, closed value sets
as named enums, optional bodies, metrics labels and token, OPTIONS without CORS, CLI help."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr
from typer.testing import CliRunner

from app.cli import cli
from app.core.config import Settings
from app.core.db import Database
from app.main import create_app

SPEC: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent.parent / "openapi" / "openapi.json").read_text("utf-8")
)


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in SPEC["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "responses" in op
    ]


def test_headers_are_documented() -> None:
    for path, method, op in _operations():
        where = f"{method.upper()} {path}"
        responses = op["responses"]
        if "201" in responses and op["operationId"] != "create_suppression":
            assert "Location" in responses["201"].get("headers", {}), where
        if path.startswith("/v1/"):
            assert "Retry-After" in responses["429"]["headers"], where
            assert "Retry-After" in responses["503"]["headers"], where
        if any(p["name"] == "If-Match" for p in op.get("parameters", ())):
            if "200" in responses:
                assert "ETag" in responses["200"]["headers"], where
            get = SPEC["paths"][path]["get"]["responses"]["200"]
            assert "ETag" in get["headers"], where
            create = SPEC["paths"][path.rsplit("/", 1)[0]]["post"]["responses"]["201"]
            assert "ETag" in create["headers"], where


def test_closed_value_sets_are_named_enums() -> None:
    schemas = SPEC["components"]["schemas"]
    for name in ("RequestStatus", "RequestType", "Regime", "ScopeStatus", "TaskStatus",
                 "TaskAction", "RuleKind", "RuleAction", "RuleSource", "Channel",
                 "IntakeChannel", "VerifiedBy", "DenialReason"):  # fmt: skip
        assert schemas[name]["type"] == "string" and schemas[name]["enum"], name
    request = schemas["RequestOut"]["properties"]
    assert request["channel"] == {"$ref": "#/components/schemas/IntakeChannel"}
    assert request["status"] == {"$ref": "#/components/schemas/RequestStatus"}
    retention = schemas["RetentionDecision"]["properties"]["status"]
    assert "erased" in retention["enum"]
    # No inline enum is left inside a union: a generator names those `…_type_0`.
    text = json.dumps(SPEC)
    for path, method, op in _operations():
        for param in op.get("parameters", ()):
            for option in param["schema"].get("anyOf", ()):
                assert "enum" not in option, f"{method.upper()} {path} {param['name']}"
    assert '"title": "Response ' not in text


def test_complete_body_is_optional() -> None:
    body = SPEC["paths"]["/v1/tasks/{task_id}/complete"]["post"]["requestBody"]
    assert body["required"] is False
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CompleteIn"
    }


async def test_docs_and_spec_are_labelled_as_themselves(client: AsyncClient) -> None:
    assert (await client.get("/openapi.json")).status_code == 200
    assert (await client.get("/docs")).status_code == 200
    assert (await client.get("/docs-assets/swagger-ui.css")).status_code == 200
    text = (await client.get("/metrics")).text
    assert 'route="/openapi.json"' in text
    assert 'route="/docs"' in text
    assert 'route="/docs-assets"' in text


async def _client_with(settings: Settings, database: Database, **changes: Any) -> AsyncClient:
    app: FastAPI = create_app(settings.model_copy(update=changes), database=database)
    return AsyncClient(transport=ASGITransport(app=app), base_url="http://test")


async def test_metrics_can_require_a_token(settings: Settings, database: Database) -> None:
    async with await _client_with(settings, database, metrics_token=SecretStr("m" * 32)) as client:
        assert (await client.get("/metrics")).status_code == 401
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.headers["content-type"] == "application/problem+json"
        right = await client.get("/metrics", headers={"Authorization": "Bearer " + "m" * 32})
        assert right.status_code == 200
        assert "spix_dsr_http_requests_total" in right.text


async def test_options_without_cors_lists_every_method(client: AsyncClient) -> None:
    response = await client.options("/v1/requests")
    assert response.status_code == 204
    assert response.headers["allow"] == "GET, OPTIONS, POST"
    item = await client.options("/v1/data-categories/some.key")
    assert item.status_code == 204
    assert item.headers["allow"] == "DELETE, GET, OPTIONS, PATCH"
    assert (await client.options("/v1/nothing-here")).status_code == 404


async def test_options_with_cors_is_a_preflight(settings: Settings, database: Database) -> None:
    origin = "https://dash.example"
    async with await _client_with(settings, database, cors_origins=[origin]) as client:
        response = await client.options(
            "/v1/requests",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin


def test_import_records_help_names_its_argument() -> None:
    result = CliRunner().invoke(cli, ["import", "records", "--help"])
    assert result.exit_code == 0
    assert "FILE" in result.output
