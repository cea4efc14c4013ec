"""The worker's scheduled work. Each job is idempotent and safe to run twice, or on several
workers at once: what it announces is marked in `scheduled_notices` in the same transaction as
the event (a second run finds the mark), and what it deletes is gone for the second run.

- deadline watch: `request.due_soon` some days before a request's deadline and
  `request.acknowledgement_due` before its acknowledgement deadline, `request.overdue` once
  past it (a new deadline after an extension is announced again);
- sealed requester contact details dropped once `purge_contact_after` has passed;
- stored Idempotency-Key answers older than their replay time deleted;
- lapsed task leases: counted, and `task.lease_lapsed` sent to the system once a task's lease
  has lapsed a number of times;
- `retention.records_due` to systems that ask for push (app/worker/records_due.py);
- expired erasure memory (the blind indexes an erasure is remembered by) deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import OPERATOR
from app.audit.service import record as audit
from app.core.config import Settings
from app.core.db import Database, utcnow
from app.core.idempotency import purge_expired
from app.outbox import service as outbox
from app.outbox.models import ScheduledNotice
from app.records.models import ErasureMemory
from app.requests.models import SubjectRequest
from app.tasks.models import Task
from app.worker.notices import mark
from app.worker.records_due import push_records_due

OPEN = ("pending_verification", "in_progress")
BATCH = 500


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    notice_days: int = 7
    idempotency_ttl: timedelta = timedelta(hours=24)
    lapses_before_event: int = 3

    @classmethod
    def from_settings(cls, settings: Settings) -> ScheduleConfig:
        return cls(
            notice_days=settings.deadline_notice_days,
            idempotency_ttl=timedelta(hours=settings.idempotency_ttl_hours),
            lapses_before_event=settings.lease_lapses_before_event,
        )


@dataclass
class ScheduleReport:
    due_soon: int = 0
    acknowledgement_due: int = 0
    overdue: int = 0
    contacts_purged: int = 0
    idempotency_deleted: int = 0
    leases_lapsed: int = 0
    lapse_events: int = 0
    records_due: int = 0
    erasure_memory_deleted: int = 0


def _request_event(session: AsyncSession, event_type: str, row: Any, **extra: Any) -> None:
    outbox.emit(
        session,
        event_type,
        {"request_id": str(row.id), "type": row.type, "regime": row.regime, **extra},
        controller=row.filed_by_controller_id,
    )


async def _deadline_kind(
    session: AsyncSession, kind: str, deadline: Any, condition: Any, field: str
) -> int:
    """Announce once each open request whose `deadline` meets `condition`."""
    total = 0
    last: uuid.UUID | None = None
    while True:
        statement = (
            select(
                SubjectRequest.id,
                SubjectRequest.type,
                SubjectRequest.regime,
                SubjectRequest.filed_by_controller_id,
                deadline.label("deadline"),
            )
            .where(SubjectRequest.status.in_(OPEN), condition)
            .order_by(SubjectRequest.id)
            .limit(BATCH)
        )
        if last is not None:
            statement = statement.where(SubjectRequest.id > last)
        rows = (await session.execute(statement)).all()
        if not rows:
            return total
        fresh = await mark(session, kind, [(r.id, r.deadline) for r in rows])
        for row in rows:
            if row.id in fresh:
                when = row.deadline.isoformat().replace("+00:00", "Z")
                _request_event(session, f"request.{kind}", row, **{field: when})
        total += len(fresh)
        last = rows[-1].id


async def deadline_watch(
    session: AsyncSession, config: ScheduleConfig, report: ScheduleReport
) -> None:
    now = utcnow()
    soon = now + timedelta(days=config.notice_days)
    due = func.coalesce(SubjectRequest.extended_due_at, SubjectRequest.due_at)
    report.overdue += await _deadline_kind(session, "overdue", due, due < now, "due_at")
    report.due_soon += await _deadline_kind(
        session, "due_soon", due, (due >= now) & (due <= soon), "due_at"
    )
    report.acknowledgement_due += await _deadline_kind(
        session,
        "acknowledgement_due",
        SubjectRequest.acknowledge_by,
        SubjectRequest.acknowledge_by.is_not(None)
        & SubjectRequest.acknowledged_at.is_(None)
        & (SubjectRequest.acknowledge_by <= soon),
        "acknowledge_by",
    )


async def purge_contacts(session: AsyncSession) -> int:
    """Drop up to a batch of sealed contact details past their proof period; how many."""
    now = utcnow()
    due = (
        select(SubjectRequest.id)
        .where(
            SubjectRequest.purge_contact_after <= now, SubjectRequest.contact_sealed.is_not(None)
        )
        .order_by(SubjectRequest.purge_contact_after)
        .limit(BATCH)
    )
    ids = list((await session.scalars(due)).all())
    if not ids:
        return 0
    purged = (
        await session.scalars(
            update(SubjectRequest)
            .where(SubjectRequest.id.in_(ids), SubjectRequest.contact_sealed.is_not(None))
            .values(contact_sealed=None)
            .returning(SubjectRequest.id)
            .execution_options(synchronize_session=False)
        )
    ).all()
    for request_id in purged:
        audit(
            session,
            OPERATOR,
            "request.contact_purged",
            "request",
            request_id,
            {"reason": "proof_period_over"},
            subject_request_id=request_id,
        )
    return len(purged)


async def purge_erasure_memory(session: AsyncSession) -> int:
    """Delete up to a batch of erasure-memory rows past their expiry; how many. The erasure
    is forgotten: a record registered for the subject later is no longer flagged."""
    keys = (ErasureMemory.request_id, ErasureMemory.controller_id, ErasureMemory.digest)
    expired = (
        select(*keys)
        .where(ErasureMemory.expires_at <= utcnow())
        .order_by(ErasureMemory.expires_at)
        .limit(BATCH)
    )
    rows = (await session.execute(expired)).all()
    if not rows:
        return 0
    await session.execute(
        delete(ErasureMemory)
        .where(tuple_(*keys).in_([tuple(r) for r in rows]))
        .execution_options(synchronize_session=False)
    )
    return len(rows)


async def watch_leases(
    session: AsyncSession, config: ScheduleConfig, report: ScheduleReport
) -> None:
    now = utcnow()
    rows = (
        await session.execute(
            select(Task.id, Task.system, Task.request_id, Task.lease_expires_at)
            .where(Task.status == "claimed", Task.lease_expires_at < now)
            .order_by(Task.lease_expires_at)
            .limit(BATCH)
        )
    ).all()
    report.leases_lapsed += len(rows)
    fresh = await mark(session, "lease_lapsed", [(r.id, r.lease_expires_at) for r in rows])
    if not fresh:
        return
    counts = dict(
        (
            await session.execute(
                select(ScheduledNotice.entity_id, func.count())
                .where(
                    ScheduledNotice.kind == "lease_lapsed",
                    ScheduledNotice.entity_id.in_(fresh),
                )
                .group_by(ScheduledNotice.entity_id)
            )
        ).all()
    )
    for row in rows:
        lapses = counts.get(row.id, 0)
        if row.id in fresh and lapses >= config.lapses_before_event:
            outbox.emit(
                session,
                "task.lease_lapsed",
                {"task_id": str(row.id), "request_id": str(row.request_id), "lapses": lapses},
                system=row.system,
            )
            report.lapse_events += 1


async def _try_lock(session: AsyncSession, name: str) -> bool:
    """On PostgreSQL one worker runs a job at a time (the others skip it this round); the
    jobs are idempotent, so this only saves duplicate scans."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    key = int.from_bytes(
        uuid.uuid5(uuid.NAMESPACE_URL, f"spix-dsr:{name}").bytes[:8], "big", signed=True
    )
    return bool(await session.scalar(select(func.pg_try_advisory_xact_lock(key))))


async def _in_batches(
    database: Database, step: Callable[[AsyncSession], Awaitable[int]], full: int
) -> int:
    """Run `step` (one batch) in transactions of its own until one does less than `full`."""
    total = 0
    while True:
        async with database.sessionmaker() as session, session.begin():
            done = await step(session)
        total += done
        if done < full:
            return total


async def run_schedule(database: Database, config: ScheduleConfig) -> ScheduleReport:
    """One round of every job, each in its own short transactions."""
    report = ScheduleReport()
    async with database.sessionmaker() as session, session.begin():
        if await _try_lock(session, "deadlines"):
            await deadline_watch(session, config, report)
    report.contacts_purged += await _in_batches(database, purge_contacts, BATCH)
    report.idempotency_deleted += await _in_batches(
        database, lambda session: purge_expired(session, config.idempotency_ttl), 1
    )
    report.erasure_memory_deleted += await _in_batches(database, purge_erasure_memory, BATCH)
    async with database.sessionmaker() as session, session.begin():
        if await _try_lock(session, "leases"):
            await watch_leases(session, config, report)
    report.records_due += await push_records_due(database, BATCH)
    return report
