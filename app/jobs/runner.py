"""Workers run jobs in chunks. A worker claims a job (queued, or running with a lapsed lease)
with `FOR UPDATE SKIP LOCKED` and a lease; each chunk recomputes the stored decisions of the
next `chunk` records (in id order) of the job's scopes and commits them together with the
job's cursor and counts, renewing the lease. A worker that dies mid-job leaves the lease to
lapse; the next claim resumes at the committed cursor (a chunk redone writes nothing twice:
only rows whose decision differs are updated). A worker that stops releases its job.

A chunk that raises is rolled back and counted as a failure, and so is a lease that lapsed
(its worker died in the chunk): the job is tried again after a growing wait, and after
`max_failures` it ends `failed` with the error's kind (never its message, which may quote
data), and `job.failed` goes out."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import Database, utcnow
from app.jobs.models import Job
from app.jobs.service import scope_from_json
from app.outbox import service as outbox
from app.records.models import Record, RecordProfile
from app.retention import decision_sql, engine
from app.retention.recompute import (
    Scope,
    _columns,
    _grouped,
    profiles_in,
    profiles_table,
    records_table,
)


@dataclass(frozen=True, slots=True)
class JobConfig:
    chunk: int = 10_000
    lease: timedelta = timedelta(seconds=60)
    max_failures: int = 5
    retry_base: timedelta = timedelta(seconds=5)

    @classmethod
    def from_settings(cls, settings: Settings) -> JobConfig:
        return cls(
            chunk=settings.job_chunk_records,
            lease=timedelta(seconds=settings.job_lease_seconds),
            max_failures=settings.job_max_failures,
            retry_base=timedelta(seconds=settings.job_retry_base_seconds),
        )

    def retry_after(self, failures: int) -> timedelta:
        wait: timedelta = self.retry_base * 2 ** max(failures - 1, 0)
        return min(self.lease, wait)


async def _claim(session: AsyncSession, worker: uuid.UUID, config: JobConfig) -> Job | None:
    now = utcnow()
    job = await session.scalar(
        select(Job)
        .where(
            Job.state.in_(("queued", "running")),
            or_(Job.claimed_until.is_(None), Job.claimed_until < now, Job.claimed_by == worker),
        )
        .order_by(Job.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if job is None:
        return None
    if job.claimed_by is not None and job.claimed_by != worker:
        # Its worker held it and vanished mid-chunk (a stopping worker releases its job).
        job.failures += 1
        if job.failures >= config.max_failures:
            _give_up(session, job, "its worker stopped mid-chunk")
            return None
    job.claimed_by = worker
    job.claimed_until = now + config.lease
    if job.state == "queued":
        job.state = "running"
        job.started_at = now
    return job


async def _count(session: AsyncSession, scopes: list[Scope]) -> int:
    total = 0
    for scope in scopes:
        total += (
            await session.scalar(
                select(func.count()).where(Record.profile_id.in_(profiles_in(scope)))
            )
            or 0
        )
    return total


async def _recompute_range(session: AsyncSession, scope: Scope, after: Any, upto: Any) -> int:
    """The recompute of app/retention/recompute.py, over the scope's records with
    after < id <= upto."""
    rules = await engine.load_rulebook(session)
    holds = await engine.load_holdbook(session)
    dates = decision_sql.Dates(session.get_bind().dialect.name)
    profiles = (
        await session.execute(
            select(
                RecordProfile.id,
                RecordProfile.controller_id,
                RecordProfile.system,
                RecordProfile.region,
                RecordProfile.categories,
                RecordProfile.purposes,
                RecordProfile.ranked_rules,
            ).where(RecordProfile.id.in_(profiles_in(scope)))
        )
    ).all()
    groups, stale = _grouped(list(profiles), rules, holds)
    if stale:
        await session.execute(
            update(profiles_table).where(profiles_table.c.id == bindparam("b_id")), stale
        )
    changed = 0
    for group, profile_ids in groups.items():
        columns = _columns(group, dates)
        window = [records_table.c.id <= upto]
        if after is not None:
            window.append(records_table.c.id > after)
        result = await session.execute(
            update(records_table)
            .where(
                records_table.c.profile_id.in_(profile_ids),
                *window,
                *decision_sql.scope_filter(frozenset(), frozenset()),
                decision_sql.changed(columns),
            )
            .values(columns)
        )
        changed += max(result.rowcount, 0)  # type: ignore[attr-defined]
    return changed


async def run_chunk(database: Database, worker: uuid.UUID, config: JobConfig) -> bool:
    """Claim a job (or keep the one held) and do one chunk of it; False when there is none."""
    async with database.read_sessionmaker() as reader:
        # A read first: an idle worker takes no write lock (SQLite) and no row locks.
        now = utcnow()
        waiting = await reader.scalar(
            select(Job.id)
            .where(
                Job.state.in_(("queued", "running")),
                or_(Job.claimed_until.is_(None), Job.claimed_until < now, Job.claimed_by == worker),
            )
            .limit(1)
        )
        if waiting is None:
            return False
    job_id: uuid.UUID | None = None
    try:
        async with database.sessionmaker() as session, session.begin():
            job = await _claim(session, worker, config)
            if job is None:
                return False
            job_id = job.id
            await _chunk(session, job, config)
    except Exception as exc:
        if job_id is None:
            raise
        await _failed(database, job_id, worker, type(exc).__name__, config)
    return True


async def _chunk(session: AsyncSession, job: Job, config: JobConfig) -> None:
    scopes = [scope_from_json(s) for s in job.params["scopes"]]
    if job.total is None:
        job.total = await _count(session, scopes)
    index, after = job.cursor.get("scope", 0), job.cursor.get("after")
    after_id = uuid.UUID(after) if after else None
    if index >= len(scopes):
        _finish(session, job)
        return
    scope = scopes[index]
    window = select(Record.id).where(Record.profile_id.in_(profiles_in(scope)))
    if after_id is not None:
        window = window.where(Record.id > after_id)
    ids = window.order_by(Record.id).limit(config.chunk).subquery()
    count = await session.scalar(select(func.count()).select_from(ids))
    upto = await session.scalar(select(ids.c.id).order_by(ids.c.id.desc()).limit(1))
    if not count:
        job.cursor = {"scope": index + 1, "after": None}
        if index + 1 >= len(scopes):
            _finish(session, job)
        return
    job.changed += await _recompute_range(session, scope, after_id, upto)
    job.done += count
    job.cursor = {"scope": index, "after": str(upto)}
    job.claimed_until = utcnow() + config.lease


async def _failed(
    database: Database, job_id: uuid.UUID, worker: uuid.UUID, kind: str, config: JobConfig
) -> None:
    """Count a chunk that raised (its work was rolled back); retry later, or give up."""
    async with database.sessionmaker() as session, session.begin():
        # The failed chunk's transaction took the claim along: the job is as it was before.
        job = await session.scalar(
            select(Job).where(Job.id == job_id).with_for_update(skip_locked=True)
        )
        if job is None or job.state not in ("queued", "running"):
            return
        held_until = job.claimed_until
        if job.claimed_by not in (None, worker) and held_until and held_until > utcnow():
            return  # another worker holds it now
        job.state = "running"
        job.started_at = job.started_at or utcnow()
        job.failures += 1
        if job.failures >= config.max_failures:
            _give_up(session, job, f"a chunk failed {job.failures} times (last: {kind})")
            return
        job.error = f"a chunk failed (attempt {job.failures} of {config.max_failures}: {kind})"
        # Nobody takes it before the wait is over, this worker included.
        job.claimed_by = None
        job.claimed_until = utcnow() + config.retry_after(job.failures)


async def release(database: Database, worker: uuid.UUID) -> None:
    """Give back the job this worker holds (it is stopping): another takes it at once."""
    async with database.sessionmaker() as session, session.begin():
        await session.execute(
            update(Job)
            .where(Job.claimed_by == worker, Job.state.in_(("queued", "running")))
            .values(claimed_by=None, claimed_until=None)
        )


def _finish(session: AsyncSession, job: Job) -> None:
    job.state = "completed"
    job.finished_at = utcnow()
    job.claimed_by = None
    job.claimed_until = None
    job.error = None
    outbox.emit(
        session,
        "job.completed",
        {**_ids(job), "records_changed": job.changed},
        controller=job.controller_id,
    )


def _ids(job: Job) -> dict[str, Any]:
    return {
        "job_id": str(job.id),
        "kind": job.kind,
        "subject_type": job.subject_type,
        "subject_id": job.subject_id,
    }


def _give_up(session: AsyncSession, job: Job, error: str) -> None:
    job.state = "failed"
    job.error = error
    job.finished_at = utcnow()
    job.claimed_by = None
    job.claimed_until = None
    outbox.emit(session, "job.failed", {**_ids(job), "error": error}, controller=job.controller_id)
