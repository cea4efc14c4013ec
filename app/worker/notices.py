"""What the schedule has announced: (entity, kind, time) marks in `scheduled_notices`, written
in the transaction of the event they stand for, so a second run (or a second worker) finds the
mark and announces nothing twice."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import utcnow
from app.outbox.models import ScheduledNotice


async def mark(
    session: AsyncSession, kind: str, marks: Sequence[tuple[uuid.UUID, datetime]]
) -> set[uuid.UUID]:
    """Mark (entity, time) pairs as announced; the entities not marked before."""
    if not marks:
        return set()
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    now = utcnow()
    statement = (
        insert(ScheduledNotice)
        .values([{"entity_id": e, "kind": kind, "at": at, "created_at": now} for e, at in marks])
        .on_conflict_do_nothing()
        .returning(ScheduledNotice.entity_id)
    )
    return set((await session.scalars(statement)).all())
