"""The OpenAPI document partners integrate by: generated from the code, tidied for tools."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.core.errors import PROBLEM_MEDIA_TYPE, Problem, ValidationErrorItem

TAGS = [
    {"name": "operations", "description": "Liveness, readiness and metrics (no key needed)."},
    {"name": "audit", "description": "The append-only, hash-chained audit log."},
]

DESCRIPTION = (
    "The data-subject-rights service of Spix: the registry of data categories, purposes, "
    "retention rules and controllers; the inventory of personal data held by Spix systems "
    "(pointers and keyed hashes only); retention decisions; and subject requests end to end.\n\n"
    "Every `/v1` path needs `Authorization: Bearer <key>`. Errors are RFC 9457 problem "
    "details (`application/problem+json`). Lists page with `limit` and an opaque `cursor`."
)


def _problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title="spix-dsr",
        version=app.version,
        openapi_version="3.1.0",
        summary="Data subject rights for Spix and its customers",
        description=DESCRIPTION,
        routes=app.routes,
        tags=TAGS,
        servers=[
            {"url": "http://localhost:8000", "description": "A local `make run`"},
        ],
        contact={"name": "Spix privacy engineering", "email": "privacy@spix.sh"},
        license_info={"name": "Apache-2.0", "identifier": "Apache-2.0"},
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas["Problem"].pop("$defs", None)
    schemas["ValidationErrorItem"] = ValidationErrorItem.model_json_schema()
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            # FastAPI's stock 422 is plain JSON of another shape; ours is a problem document.
            if "422" in responses:
                responses["422"] = _problem_response("Invalid fields")
            for status, response in responses.items():
                content = response.get("content", {})
                if status >= "400" and "application/json" in content:
                    del content["application/json"]
                    content.setdefault(
                        PROBLEM_MEDIA_TYPE, {"schema": {"$ref": "#/components/schemas/Problem"}}
                    )
    app.openapi_schema = schema
    return schema
