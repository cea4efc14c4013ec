"""`retention.records_due`: the schedule tells each system that asked for push
(`push_records_due`) which of its records became due for deletion, ids only, in batches.

Each record is announced once per deadline: a mark (record id, `records_due`, its `delete_by`)
in `scheduled_notices`, written with the event, keeps the next round (or another worker) from
announcing it again, while a record whose deadline moves is announced again when the new one
passes. Each batch is its own transaction and a keyset walk of the due index (`ix_records_due`)
that skips records already marked, so memory stays constant whatever the backlog."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import and_, exists, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import Database, utcnow
from app.outbox import service as outbox
from app.outbox.models import ScheduledNotice
from app.records.models import DUE_PREDICATE, Record
from app.systems.models import System
from app.worker.notices import mark

KIND = "records_due"


async def _batch(
    session: AsyncSession,
    system: str,
    now: datetime,
    after: tuple[datetime, uuid.UUID] | None,
    size: int,
) -> tuple[int, tuple[datetime, uuid.UUID] | None]:
    """Announce the next batch of the system's due, unannounced records: (how many, where the
    walk stands; None when it is over)."""
    announced = exists().where(
        ScheduledNotice.entity_id == Record.id,
        ScheduledNotice.kind == KIND,
        ScheduledNotice.at == Record.delete_by,
    )
    statement = select(Record.id, Record.delete_by).where(
        Record.system == system, text(DUE_PREDICATE), Record.delete_by <= now, ~announced
    )
    if after is not None:
        statement = statement.where(tuple_(Record.delete_by, Record.id) > after)
    rows = (
        await session.execute(statement.order_by(Record.delete_by, Record.id).limit(size))
    ).all()
    if not rows:
        return 0, None
    fresh = await mark(session, KIND, [(r.id, r.delete_by) for r in rows])
    ids = [r for r in rows if r.id in fresh]
    if ids:
        outbox.emit(
            session,
            "retention.records_due",
            {
                "system": system,
                "record_ids": [str(r.id) for r in ids],
                "count": len(ids),
                "due_through": ids[-1].delete_by.isoformat().replace("+00:00", "Z"),
            },
            system=system,
        )
    last = rows[-1]
    return len(ids), ((last.delete_by, last.id) if len(rows) == size else None)


async def push_records_due(database: Database, size: int) -> int:
    """One round over every system that asked for push; how many records were announced."""
    now = utcnow()
    async with database.read_sessionmaker() as reader:
        systems = list(
            await reader.scalars(
                select(System.key).where(
                    and_(System.push_records_due, System.webhook_url.is_not(None))
                )
            )
        )
    total = 0
    for system in systems:
        after: tuple[datetime, uuid.UUID] | None = None
        while True:
            async with database.sessionmaker() as session, session.begin():
                count, after = await _batch(session, system, now, after, size)
            total += count
            if after is None:
                break
    return total
