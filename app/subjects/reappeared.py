"""Records that reappeared after an erasure: listed for review, and marked reviewed."""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record as audit
from app.auth.service import Principal
from app.core.db import utcnow
from app.core.errors import Conflict, NotFound
from app.core.pagination import Page, PageParams, paginate
from app.records.models import Reappearance
from app.subjects.schemas import ReappearedOut, ReviewIn


def _rows(principal: Principal) -> ColumnElement[bool]:
    """A controller key sees its own controller's flags; admin and auditor all."""
    return principal.visibility.where(controller=lambda own: Reappearance.controller_id == own)


def _out(row: Reappearance) -> ReappearedOut:
    return ReappearedOut(
        id=row.id,
        record_id=row.record_id,
        request_id=row.request_id,
        controller_id=row.controller_id,
        system=row.system,
        flagged_at=row.flagged_at,
        reviewed_at=row.reviewed_at,
        resolution=row.review_note,  # type: ignore[arg-type]
    )


async def list_reappeared(
    session: AsyncSession,
    principal: Principal,
    page: PageParams,
    *,
    reviewed: bool | None = None,
    controller_id: uuid.UUID | None = None,
) -> Page[ReappearedOut]:
    statement: Select[Reappearance] = select(Reappearance).where(_rows(principal))
    if reviewed is not None:
        done = Reappearance.reviewed_at.is_not(None)
        statement = statement.where(done if reviewed else ~done)
    if controller_id is not None:
        statement = statement.where(Reappearance.controller_id == controller_id)
    rows, next_cursor = await paginate(session, statement, Reappearance.id, page)
    return Page[ReappearedOut](items=[_out(r) for r in rows], next_cursor=next_cursor)


async def review(
    session: AsyncSession, principal: Principal, flag_id: uuid.UUID, body: ReviewIn
) -> ReappearedOut:
    found = await session.scalar(
        select(Reappearance).where(Reappearance.id == flag_id, _rows(principal)).with_for_update()
    )
    if found is None:
        raise NotFound("No reappeared record with this id")
    if found.reviewed_at is not None:
        raise Conflict("This reappeared record was reviewed already")
    found.reviewed_at = utcnow()
    found.reviewed_by_key_id = principal.key_id
    found.review_note = body.resolution
    await session.flush()
    audit(
        session,
        principal,
        "reappearance.reviewed",
        "reappearance",
        found.id,
        {
            "record_id": str(found.record_id),
            "request_id": str(found.request_id),
            "resolution": body.resolution,
        },
    )
    return _out(found)
