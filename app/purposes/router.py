from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from app.auth.dependencies import AdminKey, AnyKey
from app.core.errors import NotFound, error_responses
from app.core.etag import IfMatch, check_if_match, etag_of
from app.core.idempotency import IdempotencyDep
from app.core.pagination import Page, PageParams, page_params, paginate
from app.core.session import SessionDep
from app.purposes import service
from app.purposes.models import Purpose
from app.purposes.schemas import LegalBasis, PurposeCreate, PurposeOut, PurposeUpdate

router = APIRouter(prefix="/v1/purposes", tags=["purposes"])


@router.post(
    "",
    status_code=201,
    response_model=PurposeOut,
    operation_id="create_purpose",
    summary="Register a purpose of processing with its legal basis",
    responses=error_responses(400, 401, 403, 409, 413, 422),
)
async def create_purpose(
    body: PurposeCreate, session: SessionDep, principal: AdminKey, idem: IdempotencyDep
) -> Response:
    purpose = await service.create_purpose(session, principal, body)
    return await idem.respond(
        PurposeOut.model_validate(purpose),
        201,
        headers={"ETag": etag_of(purpose.version), "Location": f"/v1/purposes/{purpose.key}"},
    )


@router.get(
    "",
    operation_id="list_purposes",
    summary="List purposes, optionally those on one legal basis",
    responses=error_responses(400, 401, 422),
)
async def list_purposes(
    session: SessionDep,
    principal: AnyKey,
    page: Annotated[PageParams, Depends(page_params)],
    legal_basis: Annotated[
        LegalBasis | None, Query(description="Only purposes on this legal basis")
    ] = None,
) -> Page[PurposeOut]:
    statement = service.select_purposes(legal_basis=legal_basis).where(
        principal.visibility.shared()
    )
    rows, next_cursor = await paginate(session, statement, Purpose.key, page, str)
    return Page[PurposeOut](
        items=[PurposeOut.model_validate(row) for row in rows], next_cursor=next_cursor
    )


@router.get(
    "/{key}",
    operation_id="get_purpose",
    summary="Read a purpose",
    responses=error_responses(401, 404),
)
async def get_purpose(
    key: str, session: SessionDep, principal: AnyKey, response: Response
) -> PurposeOut:
    if principal.visibility.nothing:
        raise NotFound("No purpose with this key")
    purpose = await service.get_purpose(session, key)
    response.headers["ETag"] = etag_of(purpose.version)
    return PurposeOut.model_validate(purpose)


@router.patch(
    "/{key}",
    operation_id="update_purpose",
    summary="Change a purpose's name, description, legal basis or objection rule",
    responses=error_responses(400, 401, 403, 404, 412, 413, 422),
)
async def update_purpose(
    key: str,
    body: PurposeUpdate,
    session: SessionDep,
    principal: AdminKey,
    response: Response,
    if_match: IfMatch = None,
) -> PurposeOut:
    purpose = await service.get_purpose(session, key)
    check_if_match(if_match, purpose.version)
    await service.update_purpose(session, principal, purpose, body)
    response.headers["ETag"] = etag_of(purpose.version)
    return PurposeOut.model_validate(purpose)
