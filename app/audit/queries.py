"""Reading the log: the events readers list are the linked ones, in chain order."""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.audit.schemas import AuditEventOut
from app.core.pagination import Page, PageParams, paginate


def chained_events() -> Select[AuditEvent]:
    """Linked events, to page by chain position. A written event waits to be linked only
    until the linking step after its commit (before the request that wrote it answers), or
    until the worker's next round when that step failed or another process wrote it."""
    return select(AuditEvent).where(AuditEvent.seq.is_not(None))


async def page_events(
    session: AsyncSession, statement: Select[AuditEvent], page: PageParams
) -> Page[AuditEventOut]:
    rows, next_cursor = await paginate(session, statement, AuditEvent.seq, page, parse=int)
    return Page[AuditEventOut](
        items=[AuditEventOut.model_validate(row) for row in rows], next_cursor=next_cursor
    )


async def list_events(
    session: AsyncSession,
    page: PageParams,
    *,
    entity_type: str | None = None,
    entity_id: str | None = None,
    event_type: str | None = None,
) -> Page[AuditEventOut]:
    statement = chained_events()
    if entity_type is not None:
        statement = statement.where(AuditEvent.entity_type == entity_type)
    if entity_id is not None:
        statement = statement.where(AuditEvent.entity_id == entity_id)
    if event_type is not None:
        statement = statement.where(AuditEvent.event_type == event_type)
    return await page_events(session, statement, page)
