"""API keys over HTTP. A new key is shown once, in the answer that creates it; creation
takes no Idempotency-Key (a stored answer would keep the key). Revocation takes effect at
once in the process that revokes, and in every other within `SPIX_DSR_API_KEY_CACHE_SECONDS`."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from app.auth.dependencies import require_roles
from app.auth.models import ApiKey
from app.auth.service import Principal
from app.core.errors import error_responses
from app.core.pagination import Page, PageParams, page_params, paginate
from app.core.session import SessionDep
from app.keys import service
from app.keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, Role

router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"])

Manager = Annotated[Principal, require_roles("admin", "controller")]
Reader = Annotated[Principal, require_roles("admin", "auditor", "controller")]


@router.post(
    "",
    status_code=201,
    response_model=ApiKeyCreated,
    operation_id="create_api_key",
    summary="Create an API key (shown once)",
    responses=error_responses(400, 401, 403, 413, 422),
)
async def create_api_key(
    body: ApiKeyCreate, session: SessionDep, principal: Manager, response: Response
) -> ApiKeyCreated:
    created = await service.create(session, principal, body)
    response.headers["Location"] = f"/v1/api-keys/{created.api_key.id}"
    response.headers["Cache-Control"] = "no-store"
    return service.created_out(created)


@router.get(
    "",
    operation_id="list_api_keys",
    summary="List API keys (customer staff: their controller's)",
    responses=error_responses(400, 401, 403, 422),
)
async def list_api_keys(
    session: SessionDep,
    principal: Reader,
    page: Annotated[PageParams, Depends(page_params)],
    role: Role | None = None,
    controller_id: uuid.UUID | None = None,
    active: Annotated[
        bool | None, Query(description="true: keys in force; false: revoked keys")
    ] = None,
) -> Page[ApiKeyOut]:
    statement = service.listed(principal, role=role, controller_id=controller_id, active=active)
    rows, next_cursor = await paginate(session, statement, ApiKey.id, page)
    return Page[ApiKeyOut](items=[service.out(row) for row in rows], next_cursor=next_cursor)


@router.get(
    "/{key_id}",
    operation_id="get_api_key",
    summary="Read an API key (never the key itself)",
    responses=error_responses(401, 403, 404, 422),
)
async def get_api_key(key_id: uuid.UUID, session: SessionDep, principal: Reader) -> ApiKeyOut:
    return service.out(await service.get(session, principal, key_id))


@router.post(
    "/{key_id}/revoke",
    operation_id="revoke_api_key",
    summary="Revoke an API key",
    responses=error_responses(401, 403, 404, 422),
)
async def revoke_api_key(key_id: uuid.UUID, session: SessionDep, principal: Manager) -> ApiKeyOut:
    return service.out(await service.revoke(session, principal, key_id))
