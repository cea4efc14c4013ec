from typing import Annotated

from fastapi import APIRouter, Depends, Response

from app.auth.dependencies import AdminKey, AnyKey
from app.core.errors import NotFound, error_responses
from app.core.etag import IfMatch, check_if_match, etag_of
from app.core.idempotency import IdempotencyDep
from app.core.pagination import Page, PageParams, page_params, paginate
from app.core.session import SessionDep
from app.systems import service
from app.systems.models import System
from app.systems.schemas import SystemCreate, SystemOut, SystemUpdate
from app.webhooks.targets import SafeWebhooksDep

router = APIRouter(prefix="/v1/systems", tags=["systems"])


@router.post(
    "",
    status_code=201,
    response_model=SystemOut,
    operation_id="create_system",
    summary="Register a system that holds personal data",
    responses=error_responses(400, 401, 403, 409, 413, 422),
)
async def create_system(
    body: SystemCreate,
    session: SessionDep,
    principal: AdminKey,
    idem: IdempotencyDep,
    safe: SafeWebhooksDep,
) -> Response:
    await safe.check(body.webhook_url, ["body", "webhook_url"])
    safe.check_scheme(body.webhook_signature_scheme, ["body", "webhook_signature_scheme"])
    system = await service.create_system(session, principal, body)
    return await idem.respond(
        SystemOut.model_validate(system),
        201,
        headers={"ETag": etag_of(system.version), "Location": f"/v1/systems/{system.key}"},
    )


@router.get(
    "",
    operation_id="list_systems",
    summary="List systems",
    responses=error_responses(400, 401, 422),
)
async def list_systems(
    session: SessionDep, principal: AnyKey, page: Annotated[PageParams, Depends(page_params)]
) -> Page[SystemOut]:
    statement = service.select_systems().where(principal.visibility.shared())
    rows, next_cursor = await paginate(session, statement, System.key, page, str)
    return Page[SystemOut](
        items=[SystemOut.model_validate(row) for row in rows], next_cursor=next_cursor
    )


@router.get(
    "/{key}",
    operation_id="get_system",
    summary="Read a system",
    responses=error_responses(401, 404),
)
async def get_system(
    key: str, session: SessionDep, principal: AnyKey, response: Response
) -> SystemOut:
    if principal.visibility.nothing:
        raise NotFound("No system with this key")
    system = await service.get_system(session, key)
    response.headers["ETag"] = etag_of(system.version)
    return SystemOut.model_validate(system)


@router.patch(
    "/{key}",
    operation_id="update_system",
    summary="Change a system's name, owner, description or webhook",
    responses=error_responses(400, 401, 403, 404, 412, 413, 422),
)
async def update_system(
    key: str,
    body: SystemUpdate,
    session: SessionDep,
    principal: AdminKey,
    response: Response,
    safe: SafeWebhooksDep,
    if_match: IfMatch = None,
) -> SystemOut:
    await safe.check(body.webhook_url, ["body", "webhook_url"])
    safe.check_scheme(body.webhook_signature_scheme, ["body", "webhook_signature_scheme"])
    system = await service.get_system(session, key)
    check_if_match(if_match, system.version)
    await service.update_system(session, principal, system, body)
    response.headers["ETag"] = etag_of(system.version)
    return SystemOut.model_validate(system)
