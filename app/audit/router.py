from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.audit.queries import list_events
from app.audit.schemas import AuditEventOut
from app.auth.dependencies import ReaderKey
from app.core.errors import error_responses
from app.core.pagination import Page, PageParams, page_params
from app.core.session import SessionDep

router = APIRouter(prefix="/v1/audit-events", tags=["audit"])


@router.get(
    "",
    operation_id="list_audit_events",
    summary="List audit events in chain order",
    responses=error_responses(400, 401, 403, 422),
)
async def list_audit_events(
    session: SessionDep,
    _principal: ReaderKey,
    page: Annotated[PageParams, Depends(page_params)],
    entity_type: Annotated[str | None, Query(max_length=50)] = None,
    entity_id: Annotated[str | None, Query(max_length=100)] = None,
    event_type: Annotated[str | None, Query(max_length=100)] = None,
) -> Page[AuditEventOut]:
    return await list_events(
        session, page, entity_type=entity_type, entity_id=entity_id, event_type=event_type
    )
