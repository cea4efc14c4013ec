"""The Data Rights Protocol 1.0 endpoints under `/drp` (the API root agents are given), and
their error shape: `{"code", "message", "fatal"}` as JSON (section 3.06), not problem details.

Signed messages arrive as `text/plain` (base64 of signature + JSON), so the routes read the raw
body; the protocol's bearer token is not an API key, so no v1 key dependency applies."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

import app.interop.drp.callbacks  # noqa: F401  (registers the status-callback commit hook)
from app.core.session import SessionDep
from app.interop.drp import agents, service
from app.interop.drp.messages import DrpError
from app.interop.drp.schemas import DrpAgentInfo, DrpErrorOut, DrpStatusOut, PairwiseOut
from app.requests.context import app_context

router = APIRouter(prefix="/drp/v1", tags=["Data Rights Protocol"])


def _bearer(request: Request) -> str | None:
    # Read here rather than declared: OpenAPI documents it as the `drpToken` scheme.
    return request.headers.get("authorization")


SIGNED_BODY = {
    "requestBody": {
        "required": True,
        "description": "Base64 of the Ed25519 signature (64 bytes) followed by the JSON "
        "message it signs (libsodium combined mode). Agents send it as `text/plain`, as the "
        "protocol says; the body is read as is whatever its content type.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
BEARER: list[dict[str, list[str]]] = [{"drpToken": []}]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {400: "Malformed or unsupported message", 403: "Refused", 404: "No such request"}
    return {code: {"description": text[code], "model": DrpErrorOut} for code in codes}


async def drp_error(request: Request, exc: Exception) -> Response:
    """The protocol's error shape; a refused key setup answers 403 with no body (2.05.1)."""
    assert isinstance(exc, DrpError)
    if request.method == "POST" and request.url.path.startswith("/drp/v1/agent/"):
        return Response(status_code=403)
    return JSONResponse(exc.body(), status_code=exc.status)


def _gate(request: Request) -> service.Gate:
    settings = request.app.state.settings
    return service.Gate(
        business_id=settings.drp_business_id,
        skew=timedelta(seconds=settings.clock_skew_seconds),
        allow_private=settings.webhook_allow_private_targets,
    )


@router.post(
    "/agent/{agent_id}",
    operation_id="drp_pairwise_key_setup",
    summary="Pair-wise key setup: a signed message from the agent earns its bearer token",
    response_model=PairwiseOut,
    response_model_by_alias=True,
    responses={403: {"description": "The message did not verify (no body)"}},
    openapi_extra=SIGNED_BODY | {"security": []},
)
async def pairwise_key_setup(agent_id: str, request: Request, session: SessionDep) -> Any:
    gate = _gate(request)
    agent, token = await agents.set_up_token(
        session, agent_id, await request.body(), gate.business_id, gate.skew
    )
    return PairwiseOut(agent_id=agent.agent_id, token=token)


@router.get(
    "/agent/{agent_id}",
    operation_id="drp_agent_information",
    summary="Agent information: answers `{}` while the bearer token is this agent's",
    responses=_errors(403),
    openapi_extra={"security": BEARER},
)
async def agent_information(agent_id: str, request: Request, session: SessionDep) -> DrpAgentInfo:
    await agents.check_agent_token(session, _bearer(request), agent_id)
    return DrpAgentInfo()


@router.post(
    "/data-rights-request",
    operation_id="drp_exercise",
    summary="Exercise a right for a consumer (signed); answers the request's status",
    response_model=DrpStatusOut,
    response_model_exclude_none=True,
    responses=_errors(400, 403),
    openapi_extra=SIGNED_BODY | {"security": BEARER},
)
async def exercise(request: Request, session: SessionDep) -> Any:
    return await service.exercise(
        session, _bearer(request), await request.body(), _gate(request), app_context(request.app)
    )


@router.get(
    "/data-rights-request/{request_id}",
    operation_id="drp_status",
    summary="Read the status of a request this agent filed",
    response_model=DrpStatusOut,
    response_model_exclude_none=True,
    responses=_errors(403, 404),
    openapi_extra={"security": BEARER},
)
async def status(request_id: str, request: Request, session: SessionDep) -> Any:
    return await service.status(session, _bearer(request), request_id)


@router.delete(
    "/data-rights-request/{request_id}",
    operation_id="drp_revoke",
    summary="Revoke an open or in-progress request (signed); answers the `revoked` status",
    response_model=DrpStatusOut,
    response_model_exclude_none=True,
    responses=_errors(400, 403, 404),
    openapi_extra=SIGNED_BODY | {"security": BEARER},
)
async def revoke(request_id: str, request: Request, session: SessionDep) -> Any:
    return await service.revoke(
        session,
        _bearer(request),
        request_id,
        await request.body(),
        _gate(request),
        app_context(request.app),
    )
