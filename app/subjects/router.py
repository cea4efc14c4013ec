import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from app.auth.dependencies import require_roles
from app.auth.service import Principal
from app.auth.visibility import CONTROLLER_FILTER
from app.core.errors import error_responses
from app.core.fast_path import fast_path
from app.core.hot_read import ReadScope
from app.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, PageParams, page_params
from app.core.session import SessionDep
from app.records.schemas import LookupIn, LookupOut
from app.subjects import reappeared, service
from app.subjects.schemas import ReappearedOut, ReviewIn

router = APIRouter(prefix="/v1/subjects", tags=["subjects"])

LookupKey = Annotated[Principal, require_roles("admin", "auditor", "controller")]
ReviewKey = Annotated[Principal, require_roles("admin", "controller")]


@router.post(
    "/lookup",
    response_model=LookupOut,
    operation_id="lookup_subject",
    summary="Find a subject's records by identities (sent in the body, never in a URL)",
    responses=error_responses(400, 401, 403, 413, 422),
)
@fast_path
async def lookup_subject(
    request: Request,
    body: LookupIn,
    principal: LookupKey,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    # Reads only: its own read session, no dependency but the principal, and the answer
    # serialised once (a returned model would be validated again against the same model).
    indexer = request.app.state.indexer
    async with ReadScope(request.app.state.db) as reads:
        found = await service.lookup(reads, principal, indexer, body, limit, cursor)
    return Response(found.model_dump_json().encode(), media_type="application/json")


@router.get(
    "/reappeared",
    operation_id="list_reappeared_records",
    summary="Records registered for an identity erased within the memory period, for review",
    description=(
        "A system registered a record for an identity that an erasure of the same controller "
        "took within `SPIX_DSR_ERASURE_MEMORY_DAYS` (restored from a backup, or collected "
        "again). A controller key sees its own controller's only."
    ),
    responses=error_responses(400, 401, 403, 422),
)
async def list_reappeared_records(
    session: SessionDep,
    principal: LookupKey,
    page: Annotated[PageParams, Depends(page_params)],
    reviewed: Annotated[bool | None, Query(description="Only reviewed, or unreviewed")] = None,
    controller_id: Annotated[
        uuid.UUID | None, Query(description="Only this controller's. " + CONTROLLER_FILTER)
    ] = None,
) -> Page[ReappearedOut]:
    return await reappeared.list_reappeared(
        session, principal, page, reviewed=reviewed, controller_id=controller_id
    )


@router.post(
    "/reappeared/{flag_id}/review",
    operation_id="review_reappeared_record",
    summary="Mark a reappeared record reviewed, with what the review found",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422),
)
async def review_reappeared_record(
    flag_id: uuid.UUID, body: ReviewIn, session: SessionDep, principal: ReviewKey
) -> ReappearedOut:
    return await reappeared.review(session, principal, flag_id, body)
