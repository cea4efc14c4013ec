from typing import Annotated

from fastapi import APIRouter, Query

from app.auth.dependencies import require_roles
from app.auth.service import Principal
from app.core.errors import error_responses
from app.core.identity import IndexerDep
from app.core.pagination import DEFAULT_LIMIT, MAX_LIMIT
from app.core.session import SessionDep
from app.records.schemas import LookupIn, LookupOut
from app.subjects import service

router = APIRouter(prefix="/v1/subjects", tags=["subjects"])

LookupKey = Annotated[Principal, require_roles("admin", "auditor", "controller")]


@router.post(
    "/lookup",
    operation_id="lookup_subject",
    summary="Find a subject's records by identities (sent in the body, never in a URL)",
    responses=error_responses(400, 401, 403, 413, 422),
)
async def lookup_subject(
    body: LookupIn,
    session: SessionDep,
    principal: LookupKey,
    indexer: IndexerDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> LookupOut:
    return await service.lookup(session, principal, indexer, body, limit, cursor)
