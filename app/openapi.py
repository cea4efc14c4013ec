"""The OpenAPI document partners integrate by: generated from the code, tidied for tools."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.core.errors import PROBLEM_MEDIA_TYPE, Problem, ValidationErrorItem
from app.ropa.fides_schemas import FidesManifest

REF_TEMPLATE = "#/components/schemas/{model}"

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
        "name": "Data Rights Protocol",
        "description": "The Data Rights Protocol 1.0, covered-business side, under `/drp`: "
        "authorized agents set up a pair-wise token with a signed message, exercise rights, "
        "read status and revoke; errors are the protocol's `{code, message, fatal}`. "
        "`/v1/drp-agents` is where the privacy team registers the agents it accepts.",
    },
    {
        "name": "api-keys",
        "description": "API keys over HTTP: admins manage all, customer staff their own "
        "controller's; a key is shown once.",
    },
    {
        "name": "OpenDSR",
        "description": "OpenDSR processor endpoints: a customer (the controller) files, polls "
        "and cancels its end users' access, portability and erasure requests with its "
        "controller key; answers and status callbacks are signed (RSA-SHA256) with the "
        "certificate the discovery publishes. Errors take the OpenDSR error shape.",
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


# Protocol adapters whose errors take the protocol's own JSON shape, not problem details.
OWN_ERROR_SHAPES = ("/opendsr/",)


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


def _closed_pattern_properties(node: Any) -> None:
    """A dict whose keys are constrained refuses any other key: pydantic's schema gives the
    keys' pattern (patternProperties) but leaves other keys allowed; say they are not."""
    if isinstance(node, dict):
        if "patternProperties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _closed_pattern_properties(value)
    elif isinstance(node, list):
        for value in node:
            _closed_pattern_properties(value)


RATE_LIMITED_STATUS = "429"
RATE_LIMITED_DESCRIPTION = "This key's request budget is spent; retry after Retry-After seconds"
RETRY_AFTER = {
    "description": "Seconds to wait before trying again",
    "schema": {"type": "integer", "minimum": 0},
}
ETAG = {
    "description": "The object's version: send it back as `If-Match` to make a write conditional",
    "schema": {"type": "string"},
}
LOCATION = {
    "description": "Where the created object is read",
    "schema": {"type": "string", "format": "uri-reference"},
}
# 201s that create something with no address of its own to point at.
NO_LOCATION = frozenset({"create_suppression"})

# Closed value sets by their values: one named schema each, so a generated client has one
# type per set (and no `…_type_0` names for optional ones).
ENUM_NAMES = {
    (
        "contract",
        "legitimate_interest",
        "consent",
        "legal_obligation",
        "vital_interest",
        "public_task",
    ): "LegalBasis",
    ("minimum", "maximum"): "RuleKind",
    ("delete", "anonymize"): "RuleAction",
    ("law", "contract", "platform_default", "customer_setting"): "RuleSource",
    ("pending_verification", "in_progress", "completed", "denied", "cancelled"): "RequestStatus",
    (
        "access",
        "portability",
        "rectification",
        "erasure",
        "restriction",
        "objection",
        "opt_out",
    ): "RequestType",
    (
        "awaiting_controller",
        "in_progress",
        "completed",
        "declined",
        "handled_by_controller",
        "failed",
    ): "ScopeStatus",
    ("pending", "claimed", "completed", "failed", "suspended"): "TaskStatus",
    ("export", "erase", "rectify", "restrict", "unrestrict"): "TaskAction",
    ("email", "sms", "voice", "all"): "Channel",
    ("email", "sms", "voice"): "SendChannel",
    ("unsubscribe_link", "sms_stop", "request", "gpc", "manual"): "SuppressionSource",
    ("admin", "auditor", "system", "controller"): "ApiKeyRole",
    ("low", "medium", "high"): "Sensitivity",
    ("erased_again", "lawful_new_collection", "not_the_same_subject"): "ReappearedResolution",
    ("processor", "sub_processor", "third_party", "controller"): "RecipientRole",
    ("not_applicable", "adequacy", "scc", "bcr", "derogation", "none"): "TransferSafeguard",
    ("gdpr", "uk_gdpr", "ccpa", "vcdpa", "cpa", "ctdpa", "lgpd", "other"): "Regime",
    ("email", "web", "dashboard", "api"): "IntakeChannel",
    ("code", "manual"): "VerificationMethod",
    ("code", "manual", "trusted_session", "not_required"): "VerifiedBy",
    ("unverifiable", "manifestly_unfounded", "excessive", "exempt"): "DenialReason",
    ("pending", "delivered", "dead"): "DeliveryStatus",
}
# Free-form objects that a property may also leave null: named after what they hold.
OBJECT_NAMES = {
    ("ItemError", "errors"): "ItemErrorDetail",
    ("RecordPatch", "events"): "RecordEvents",
    ("RequestDetails", "corrections"): "Corrections",
    ("RequestCreated", "outcome"): "RequestOutcome",
    ("RequestOut", "outcome"): "RequestOutcome",
    ("ScopeOut", "outcome"): "ScopeOutcome",
}
# Operations that answer a free-form object: the name of what they answer.
RESPONSE_NAMES = {"get_request_export": "AccessPackage"}


def _document_headers(schema: dict[str, Any]) -> None:
    """ETag where an object's version is answered, Location on creations, Retry-After on 429."""
    paths = schema.get("paths", {})
    versioned = {
        path
        for path, item in paths.items()
        for op in item.values()
        if isinstance(op, dict)
        and any(p.get("name") == "If-Match" for p in op.get("parameters", ()))
    }
    for path, item in paths.items():
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            responses = op["responses"]
            if path in versioned and method in {"get", "patch", "put"} and "200" in responses:
                responses["200"].setdefault("headers", {})["ETag"] = ETAG
            if "201" in responses:
                headers = responses["201"].setdefault("headers", {})
                if any(p.rsplit("/", 1)[0] == path for p in versioned):
                    headers["ETag"] = ETAG
                if op.get("operationId") not in NO_LOCATION:
                    headers["Location"] = LOCATION
            if path.startswith("/v1/") and op.get("security"):
                responses.setdefault(
                    RATE_LIMITED_STATUS,
                    {
                        **_problem_response(RATE_LIMITED_DESCRIPTION),
                        "headers": {"Retry-After": RETRY_AFTER},
                    },
                )
                op["responses"] = dict(sorted(responses.items()))


def _pascal(*words: str) -> str:
    return "".join(
        part.capitalize() for word in words for part in word.replace("-", "_").split("_")
    )


def _name_inline_schemas(schema: dict[str, Any]) -> None:
    """Lift closed value sets and free-form optional objects into named component schemas."""
    components = schema["components"]["schemas"]

    def lift(node: dict[str, Any], name: str) -> dict[str, Any]:
        body = {
            k: v
            for k, v in node.items()
            if k not in {"title", "description", "examples", "default"}
        }
        if name in components and components[name] != {**body, "title": name}:
            return node
        components[name] = {**body, "title": name}
        return {"$ref": f"#/components/schemas/{name}"}

    def enum_name(node: dict[str, Any]) -> str | None:
        if node.get("type") == "string" and isinstance(node.get("enum"), list):
            return ENUM_NAMES.get(tuple(node["enum"]))
        return None

    def visit(node: Any, owner: str, prop: str) -> Any:
        if isinstance(node, list):
            return [visit(item, owner, prop) for item in node]
        if not isinstance(node, dict):
            return node
        name = enum_name(node)
        if name:
            return lift(node, name)
        if "anyOf" in node and (owner, prop) in OBJECT_NAMES:
            name = OBJECT_NAMES[(owner, prop)]
            for i, option in enumerate(node["anyOf"]):
                if option.get("type") == "object":
                    node["anyOf"][i] = lift(option, name)
                elif option.get("type") == "array" and option["items"].get("type") == "object":
                    option["items"] = lift(option["items"], name)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "properties":
                out[key] = {p: visit(v, owner, p) for p, v in value.items()}
            else:
                out[key] = visit(value, owner, prop)
        return out

    for name in list(components):
        # A component's own body stays where it is: only what it holds is named.
        if not enum_name(components[name]):
            components[name] = visit(components[name], name, "")
    for item in schema.get("paths", {}).values():
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            for param in op.get("parameters", ()):
                param["schema"] = visit(param["schema"], "", param["name"])
            # An optional body (`CompleteIn | None = None`): optional, not "null or the object".
            for media in op.get("requestBody", {}).get("content", {}).values():
                options = media["schema"].get("anyOf", [])
                if len(options) == 2 and {"type": "null"} in options:
                    media["schema"] = next(o for o in options if o != {"type": "null"})
                    op["requestBody"]["required"] = False
            for response in op["responses"].values():
                for media in response.get("content", {}).values():
                    media["schema"] = visit(media["schema"], "", "")
                    name = RESPONSE_NAMES.get(op.get("operationId", ""))
                    if name and media["schema"].get("type") == "object":
                        media["schema"] = lift(media["schema"], name)


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title="spix-dsr",
        version=app.version,
        openapi_version="3.1.0",
        summary="Data subject rights for Spix and its customers",
        description=DESCRIPTION,
        # In the order the routers are written, whatever order requests try them in.
        routes=getattr(app.state, "document_routes", app.routes),
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
    # Answers under a media type of their own, which FastAPI documents only by name.
    for model in (FidesManifest,):
        body = model.model_json_schema(ref_template=REF_TEMPLATE, mode="serialization")
        schemas.update(body.pop("$defs", {}))
        schemas[model.__name__] = body
    components.setdefault("securitySchemes", {})["drpToken"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "A Data Rights Protocol agent's token from the pair-wise key setup",
    }
    _closed_pattern_properties(schemas)
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
            own_errors = path.startswith(OWN_ERROR_SHAPES)
            if own_errors:
                # Its invalid bodies answer 400 in the protocol's shape, never 422.
                responses.pop("422", None)
            # FastAPI's stock 422 is plain JSON of another shape; ours is a problem document.
            if "422" in responses:
                responses["422"] = _problem_response("Invalid fields")
            for status, response in responses.items():
                content = response.get("content", {})
                # The protocol adapters answer their protocol's own error shape.
                if path.startswith("/drp/"):
                    continue
                protocol_shape = own_errors and status in ("400", "404")
                if status >= "400" and "application/json" in content and not protocol_shape:
                    del content["application/json"]
                    content.setdefault(
                        PROBLEM_MEDIA_TYPE, {"schema": {"$ref": "#/components/schemas/Problem"}}
                    )
            operation["responses"] = dict(sorted(responses.items()))
    schema["tags"] = [tag for tag in TAGS if tag["name"] in used_tags]
    _document_headers(schema)
    _name_inline_schemas(schema)
    app.openapi_schema = schema
    return schema
