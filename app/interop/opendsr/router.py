"""OpenDSR processor endpoints (`/opendsr/v1`): a customer, as controller, files, polls and
cancels its end users' requests with its controller key. Every answer, errors included, is
signed as the specification asks; errors take the specification's shape."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

from app.auth.dependencies import require_roles
from app.auth.service import Principal
from app.core.db import utcnow
from app.core.errors import ServiceUnavailable, error_responses
from app.core.session import SessionDep
from app.interop.opendsr import service
from app.interop.opendsr.callbacks import API_VERSION
from app.interop.opendsr.schemas import (
    Cancelled,
    Created,
    Discovery,
    OpenDsrError,
    OpenDsrRequestIn,
    Status,
    SupportedIdentity,
)
from app.interop.opendsr.service import Found, OpenDsrProblem
from app.interop.opendsr.signing import NotConfigured, ProcessorSigner, processor_signer
from app.requests.context import RequestContext, request_context
from app.webhooks.targets import SafeWebhooksDep

SIGNED_HEADERS = {
    "X-OpenDSR-Processor-Domain": {
        "description": "The domain the signing certificate is issued to",
        "schema": {"type": "string"},
    },
    "X-OpenDSR-Signature": {
        "description": "Base64 RSA-SHA256 (PKCS#1 v1.5) signature of the body's bytes, made "
        "with the key of the certificate at the discovery's processor_certificate",
        "schema": {"type": "string"},
    },
}
SPEC_ERROR = {
    "model": OpenDsrError,
    "description": "The OpenDSR error object (signed like every answer)",
    "headers": SIGNED_HEADERS,
}


def documented(ok: int, *refusals: int) -> dict[int | str, dict[str, Any]]:
    """A keyed OpenDSR operation's answers: the signed success, the spec's refusals."""
    return {
        ok: {"headers": SIGNED_HEADERS},
        **{status: SPEC_ERROR for status in refusals},
        **error_responses(401, 403, 503),
    }


def signer_of(request: Request) -> ProcessorSigner:
    try:
        return processor_signer(request.app.state.settings)
    except NotConfigured:
        raise ServiceUnavailable("OpenDSR is not configured on this deployment") from None


async def _signer(request: Request) -> ProcessorSigner:
    return signer_of(request)


SignerDep = Annotated[ProcessorSigner, Depends(_signer)]
ControllerKey = Annotated[Principal, require_roles("controller")]
ContextDep = Annotated[RequestContext, Depends(request_context)]


def signed(signer: ProcessorSigner, content: BaseModel, status: int = 200) -> Response:
    body = orjson.dumps(content.model_dump(mode="json", exclude_none=True))
    return Response(body, status, signer.headers(body), media_type="application/json")


def _error(request: Request, problem: OpenDsrProblem) -> Response:
    # The adapter's own refusals are past the schema: domain `Request`.
    errors = problem.errors or [
        {"domain": "Request", "reason": problem.reason, "message": problem.message}
    ]
    content = OpenDsrError.model_validate(
        {"error": {"code": problem.code, "message": problem.message, "errors": errors}}
    )
    response = signed(signer_of(request), content, problem.code)
    response.headers["Cache-Control"] = "no-store"
    return response


class OpenDsrRoute(APIRoute):
    """Errors in the body (and the service's refusals) answer in the spec's error shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return _error(request, service.invalid(exc))
            except OpenDsrProblem as problem:
                return _error(request, problem)

        return route


router = APIRouter(prefix="/opendsr/v1", tags=["OpenDSR"], route_class=OpenDsrRoute)


def _status(request: Request, found: Found) -> Status:
    results = None
    if found.status == "completed" and found.request_type in ("access", "portability"):
        results = str(request.base_url).rstrip("/") + f"/v1/requests/{found.link.request_id}/export"
    return Status(
        controller_id=str(found.link.controller_id),
        expected_completion_time=found.expected,
        subject_request_id=found.link.subject_request_id,
        request_status=found.status,  # type: ignore[arg-type]
        api_version=API_VERSION,
        results_url=results,
    )


@router.get(
    "/discovery",
    operation_id="opendsr_discovery",
    summary="OpenDSR discovery: identities, request types and the signing certificate",
    responses={200: {"headers": SIGNED_HEADERS}, **error_responses(503)},
)
async def discovery(request: Request, signer: SignerDep) -> Response:
    supported = [
        SupportedIdentity(identity_type=kind, identity_format=form)  # type: ignore[arg-type]
        for kind in ("email", "controller_customer_id", "phone_number")
        for form in ("raw", "sha256")
    ]
    content = Discovery(
        api_version=API_VERSION,
        supported_identities=supported,
        supported_subject_request_types=["access", "portability", "erasure"],
        supported_regulations=["gdpr", "ccpa"],
        processor_certificate=str(request.url_for("opendsr_certificate")),
    )
    return signed(signer, content)


@router.get(
    "/cert.pem",
    operation_id="opendsr_certificate",
    name="opendsr_certificate",
    summary="The certificate that signs OpenDSR answers and callbacks (PEM)",
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **error_responses(503),
    },
    response_class=Response,
)
async def certificate(signer: SignerDep) -> Response:
    return Response(signer.certificate_pem, media_type="text/plain")


@router.post(
    "/opendsr_requests",
    status_code=201,
    operation_id="opendsr_create_request",
    summary="File an OpenDSR request (access, portability, erasure) for one of your end users",
    response_model=Created,
    responses={**documented(201, 400), **error_responses(413)},
)
async def create(
    body: OpenDsrRequestIn,
    request: Request,
    session: SessionDep,
    principal: ControllerKey,
    ctx: ContextDep,
    safe: SafeWebhooksDep,
    signer: SignerDep,
) -> Response:
    del body  # validated here for the document; the adapter reads the bytes as sent
    raw = await request.body()
    found = await service.file_opendsr_request(session, principal, raw, ctx, safe, signer.domain)
    content = Created(
        controller_id=str(found.link.controller_id),
        expected_completion_time=found.expected,
        received_time=found.link.received_at,
        encoded_request=base64.b64encode(raw).decode("ascii"),
        subject_request_id=found.link.subject_request_id,
        api_version=API_VERSION,
    )
    return signed(signer, content, 201)


@router.get(
    "/opendsr_requests/{subject_request_id}",
    operation_id="opendsr_request_status",
    summary="The status of an OpenDSR request",
    response_model=Status,
    responses=documented(200, 400, 404),
)
async def status(
    subject_request_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: ControllerKey,
    signer: SignerDep,
) -> Response:
    found = await service.opendsr_request(session, principal, subject_request_id)
    return signed(signer, _status(request, found))


@router.delete(
    "/opendsr_requests/{subject_request_id}",
    status_code=202,
    operation_id="opendsr_cancel_request",
    summary="Cancel an OpenDSR request while it is pending",
    response_model=Cancelled,
    responses=documented(202, 400, 404),
)
async def cancel(
    subject_request_id: uuid.UUID,
    session: SessionDep,
    principal: ControllerKey,
    ctx: ContextDep,
    signer: SignerDep,
) -> Response:
    found = await service.cancel_opendsr_request(session, principal, subject_request_id, ctx)
    content = Cancelled(
        controller_id=str(found.link.controller_id),
        received_time=utcnow(),
        subject_request_id=found.link.subject_request_id,
        api_version=API_VERSION,
    )
    return signed(signer, content, 202)
