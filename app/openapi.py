"""The OpenAPI document partners integrate by: generated from the code, tidied for tools."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.core.errors import PROBLEM_MEDIA_TYPE, Problem, ValidationErrorItem

# Every tag an operation uses must be here (openapi/redocly.yaml makes that an error); only
# those some operation uses go into the document, in this order.
TAGS = [
    {"name": "operations", "description": "Liveness, readiness and metrics (no key needed)."},
    {
        "name": "controllers",
        "description": "Spix's customers as controllers: their relationship to Spix and how "
        "subject requests reach them.",
    },
    {"name": "systems", "description": "The Spix systems that hold personal data."},
    {"name": "data-categories", "description": "The registry of personal-data categories."},
    {"name": "purposes", "description": "The registry of processing purposes."},
    {"name": "retention-rules", "description": "How long each data category is kept, and why."},
    {"name": "legal-holds", "description": "Holds that suspend deletion while they apply."},
    {
        "name": "recipients",
        "description": "Processors, sub-processors and third parties that receive personal "
        "data, with their country and transfer safeguard.",
    },
    {"name": "ropa", "description": "The record of processing activities (GDPR Art. 30)."},
    {
        "name": "records",
        "description": "The inventory: pointers to personal data in Spix systems, with identities "
        "as keyed hashes only, and each record's retention decision.",
    },
    {"name": "subjects", "description": "Finding a data subject's records by identity."},
    {
        "name": "retention",
        "description": "Whether records may or must be deleted now, what is due, what no rule "
        "covers.",
    },
    {
        "name": "suppressions",
        "description": "Marketing opt-outs per channel, purpose and controller, with identities "
        "as keyed hashes only, and the check to make before every send.",
    },
    {
        "name": "requests",
        "description": "Data subject requests: intake, verification, deadlines, per-controller "
        "scopes, decisions, outcomes and the access package.",
    },
    {
        "name": "tasks",
        "description": "Work for the systems that hold the data, pulled with a lease.",
    },
    {"name": "audit", "description": "The append-only, hash-chained audit log."},
    {
        "name": "webhooks",
        "description": "Signed webhook deliveries from the outbox, redelivery, signing secrets.",
    },
    {"name": "jobs", "description": "Work done by workers in chunks: state and progress."},
    {
        "name": "api-keys",
        "description": "API keys over HTTP: admins manage all, customer staff their own "
        "controller's; a key is shown once.",
    },
]

DESCRIPTION = (
    "The data-subject-rights service of Spix: the registry of data categories, purposes, "
    "retention rules and controllers; the inventory of personal data held by Spix systems "
    "(pointers and keyed hashes only); retention decisions; and subject requests end to end.\n\n"
    "Every `/v1` path needs `Authorization: Bearer <key>`. Errors are RFC 9457 problem "
    "details (`application/problem+json`). Lists page with `limit` and an opaque `cursor`."
)


# Answered by middleware before any route runs, so no route declares it: documented on every
# operation (it is also the one 4xx that the unauthenticated operations can answer).
BODY_LIMIT_STATUS = "413"
BODY_LIMIT_DESCRIPTION = "Request body too large"
# Answered by middleware when the database cannot be reached, on every /v1 operation.
UNAVAILABLE_STATUS = "503"
UNAVAILABLE_DESCRIPTION = "Database unreachable or busy; retry after Retry-After seconds"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def _problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _unavailable_response() -> dict[str, Any]:
    return {
        **_problem_response(UNAVAILABLE_DESCRIPTION),
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before trying again",
                "schema": {"type": "integer"},
            }
        },
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
        # Relative: the host that serves this document (a local `make run` answers at
        # http://localhost:8000). Partners' generated clients take their base URL as an argument.
        servers=[{"url": "/", "description": "The host that serves this document"}],
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
    used_tags: set[str] = set()
    for path, path_item in schema.get("paths", {}).items():
        for method, operation in path_item.items():
            if method not in HTTP_METHODS:
                continue
            used_tags.update(operation.get("tags", ()))
            # Outside /v1 nothing needs a key: say so, rather than leave it unsaid. A /v1
            # operation gets its requirement from its key dependency; one without it is left
            # undeclared, for the lint to catch.
            if path.split("/")[1] != "v1" and "security" not in operation:
                operation["security"] = []
            responses = operation.setdefault("responses", {})
            responses.setdefault(BODY_LIMIT_STATUS, _problem_response(BODY_LIMIT_DESCRIPTION))
            if path.startswith("/v1/"):
                responses.setdefault(UNAVAILABLE_STATUS, _unavailable_response())
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
            operation["responses"] = dict(sorted(responses.items()))
    schema["tags"] = [tag for tag in TAGS if tag["name"] in used_tags]
    app.openapi_schema = schema
    return schema
