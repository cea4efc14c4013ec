"""RFC 9457 problem details: every error the service answers is one of these."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "urn:spix-dsr:problem:"


class AppError(Exception):
    """An error that knows its HTTP status; raised by services, rendered by one handler."""

    status: int = 500
    slug: str = "internal-error"
    title: str = "Internal server error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = headers
        self.extra = extra


class BadRequest(AppError):
    status, slug, title = 400, "bad-request", "Bad request"


class MalformedBody(AppError):
    status, slug, title = 400, "malformed-body", "Malformed request body"


class Unauthorized(AppError):
    status, slug, title = 401, "unauthorized", "Missing or unknown API key"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(AppError):
    status, slug, title = 403, "forbidden", "This key's role may not call this operation"


class NotFound(AppError):
    status, slug, title = 404, "not-found", "Not found"


class MethodNotAllowed(AppError):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"


class Conflict(AppError):
    status, slug, title = 409, "conflict", "Conflict"


class PreconditionFailed(AppError):
    status, slug, title = 412, "precondition-failed", "The object changed since it was read"


class PayloadTooLarge(AppError):
    status, slug, title = 413, "payload-too-large", "Request body too large"


class Unprocessable(AppError):
    """A well-formed payload that names something invalid (an unknown category, say)."""

    status, slug, title = 422, "validation-error", "Invalid request"

    def __init__(
        self,
        detail: str,
        *,
        loc: list[str | int] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        if errors is None and loc:
            errors = [{"loc": loc, "msg": detail, "type": "value_error"}]
        super().__init__(detail, errors=errors)


class ServiceUnavailable(AppError):
    status, slug, title = 503, "unavailable", "Service unavailable"

    def __init__(self, detail: str | None = None, *, retry_after: int = 5) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class ValidationErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(examples=[PROBLEM_BASE + "not-found"])
    title: str = Field(examples=["Not found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["No controller with this id"])
    request_id: str | None = None
    errors: list[ValidationErrorItem] | None = None


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    request: Request | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    request_id = getattr(request.state, "request_id", None) if request is not None else None
    if request_id:
        body["request_id"] = request_id
    body.update({k: v for k, v in extra.items() if v is not None})
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Only where and what: pydantic's "input" and "ctx" could echo personal data back.
    return [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err.get("type")}
        for err in exc.errors()
    ]


async def _handle_app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    return problem_response(
        exc.status,
        exc.slug,
        exc.title,
        exc.detail,
        request=request,
        headers=exc.headers,
        **exc.extra,
    )


async def _handle_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc)
    if any(err["type"] == "json_invalid" for err in errors):
        return problem_response(
            400,
            MalformedBody.slug,
            MalformedBody.title,
            "The request body is not valid JSON",
            request=request,
        )
    return problem_response(
        422,
        "validation-error",
        "Invalid request",
        "The request has invalid fields; see errors",
        request=request,
        errors=errors,
    )


async def _handle_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    slug = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}.get(
        status, phrase.lower().replace(" ", "-")
    )
    detail = exc.detail if isinstance(exc.detail, str) and status != 404 else phrase
    if status == 404:
        detail = "No such resource"
    return problem_response(
        status, slug, phrase, detail, request=request, headers=getattr(exc, "headers", None)
    )


async def _handle_stale(request: Request, exc: Exception) -> Response:
    return problem_response(
        412,
        PreconditionFailed.slug,
        PreconditionFailed.title,
        "Another write changed this object first; read it again",
        request=request,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _handle_app_error)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    app.add_exception_handler(StaleDataError, _handle_stale)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the errors an operation can answer."""
    descriptions = {
        400: "Malformed request",
        401: "Missing or unknown API key",
        403: "The key's role may not call this operation",
        404: "Not found, or outside the key's tenant",
        409: "Conflict with the current state",
        412: "If-Match does not match the current ETag",
        413: "Request body too large",
        422: "Invalid fields",
        503: "Database unreachable",
    }
    return {
        status: {
            "model": Problem,
            "description": descriptions.get(status, HTTPStatus(status).phrase),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
