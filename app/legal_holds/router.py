import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Response

from app.auth.dependencies import AdminKey, ReaderKey
from app.core.errors import error_responses
from app.core.idempotency import IdempotencyDep
from app.core.identity import IndexerDep
from app.core.pagination import Page, PageParams, page_params, paginate
from app.core.session import SessionDep
from app.legal_holds import service
from app.legal_holds.models import LegalHold
from app.legal_holds.schemas import LegalHoldCreate, LegalHoldOut, LegalHoldRelease

# Holds belong to the privacy and legal team: admin places and releases, auditors read.
router = APIRouter(prefix="/v1/legal-holds", tags=["legal-holds"])


@router.post(
    "",
    status_code=201,
    response_model=LegalHoldOut,
    operation_id="place_legal_hold",
    summary="Place a legal hold",
    responses=error_responses(400, 401, 403, 409, 413, 422),
)
async def place_legal_hold(
    body: LegalHoldCreate,
    session: SessionDep,
    principal: AdminKey,
    idem: IdempotencyDep,
    indexer: IndexerDep,
) -> Response:
    view = await service.place_hold(session, principal, body, indexer)
    return await idem.respond(
        view.out(), 201, headers={"Location": f"/v1/legal-holds/{view.hold.id}"}
    )


@router.get(
    "",
    operation_id="list_legal_holds",
    summary="List legal holds",
    responses=error_responses(400, 401, 403, 422),
)
async def list_legal_holds(
    session: SessionDep,
    principal: ReaderKey,
    page: Annotated[PageParams, Depends(page_params)],
    active: Annotated[
        bool | None, Query(description="true: holds in force; false: released holds")
    ] = None,
) -> Page[LegalHoldOut]:
    rows, next_cursor = await paginate(session, service.listed(active), LegalHold.id, page)
    views = await service.views(session, rows)
    return Page[LegalHoldOut](items=[view.out() for view in views], next_cursor=next_cursor)


@router.get(
    "/{hold_id}",
    operation_id="get_legal_hold",
    summary="Read a legal hold",
    responses=error_responses(401, 403, 404, 422),
)
async def get_legal_hold(
    hold_id: uuid.UUID, session: SessionDep, principal: ReaderKey
) -> LegalHoldOut:
    return (await service.get_hold(session, hold_id)).out()


@router.post(
    "/{hold_id}/release",
    operation_id="release_legal_hold",
    summary="Release a legal hold",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422),
)
async def release_legal_hold(
    hold_id: uuid.UUID,
    session: SessionDep,
    principal: AdminKey,
    body: Annotated[LegalHoldRelease | None, Body()] = None,
) -> LegalHoldOut:
    view = await service.get_hold(session, hold_id)
    await service.release_hold(session, principal, view, body.note if body else None)
    return view.out()
