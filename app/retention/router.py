from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.auth.dependencies import AnyKey
from app.core.errors import error_responses
from app.core.pagination import PageParams, page_params
from app.core.session import ReadSessionDep, SessionDep
from app.retention import service
from app.retention.schemas import CoverageOut, DuePage, EligibilityIn, EligibilityOut

router = APIRouter(prefix="/v1/retention", tags=["retention"])


@router.post(
    "/eligibility",
    operation_id="check_retention_eligibility",
    summary="May or must these records be deleted now (up to 1000)",
    responses=error_responses(400, 401, 413, 422),
)
async def check_retention_eligibility(
    body: EligibilityIn, session: ReadSessionDep, principal: AnyKey
) -> EligibilityOut:
    return EligibilityOut(results=await service.eligibility(session, principal, body))


@router.get(
    "/due",
    operation_id="list_due_records",
    summary="Records whose delete_by has passed and that no hold keeps, oldest first",
    responses=error_responses(400, 401, 422),
)
async def list_due_records(
    session: ReadSessionDep,
    principal: AnyKey,
    page: Annotated[PageParams, Depends(page_params)],
    system: Annotated[str | None, Query(max_length=100)] = None,
) -> DuePage:
    return await service.due(session, principal, system, page.limit, page.cursor)


@router.get(
    "/coverage",
    operation_id="get_retention_coverage",
    summary="Categories in use that no maximum retention rule covers",
    responses=error_responses(401),
)
async def get_retention_coverage(session: SessionDep, principal: AnyKey) -> CoverageOut:
    return await service.coverage(session, principal)
