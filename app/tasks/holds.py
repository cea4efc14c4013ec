"""Erase work under a hold. Holds win at every step: an erase task whose records a legal hold
or a restriction holds is `suspended` (not handed out, its lease dropped), and goes back to
`pending` once nothing holds them. The record's stored `held` column decides, so this never
re-derives holds; each statement covers every task the change reaches."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import Operator
from app.audit.service import record as audit
from app.auth.service import Principal
from app.records.models import Record, RecordProfile
from app.retention import engine
from app.tasks.models import Task, TaskRecord

OPEN_STATUSES = ("pending", "claimed")


def holds_a_record() -> ColumnElement[bool]:
    """The task covers a record that is held (by a legal hold or its restriction) and not
    yet erased. Correlates to the enclosing statement's `tasks` row."""
    return exists().where(
        TaskRecord.task_id == Task.id,
        Record.id == TaskRecord.record_id,
        Record.held.is_(True),
        Record.state != "erased",
    )


def erase_allowed() -> ColumnElement[bool]:
    """For a claim: any task but an erase task whose records are held."""
    return (Task.action != "erase") | ~holds_a_record()


async def sync_suspensions(
    session: AsyncSession,
    actor: Principal | Operator,
    record_ids: Iterable[uuid.UUID] | None = None,
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """Suspend the open erase tasks whose records are now held, and return the suspended ones
    whose records no longer are; `record_ids` narrows this to the tasks covering those
    records. Two statements for any number of tasks. Returns (suspended, resumed)."""
    narrow: list[ColumnElement[bool]] = []
    if record_ids is not None:
        ids = list(record_ids)
        if not ids:
            return [], []
        narrow.append(Task.id.in_(select(TaskRecord.task_id).where(TaskRecord.record_id.in_(ids))))
    suspended = list(
        (
            await session.execute(
                update(Task)
                .where(
                    Task.action == "erase",
                    Task.status.in_(OPEN_STATUSES),
                    holds_a_record(),
                    *narrow,
                )
                .values(status="suspended", lease_expires_at=None)
                .returning(Task.id, Task.request_id)
                .execution_options(synchronize_session=False)
            )
        ).all()
    )
    resumed = list(
        (
            await session.execute(
                update(Task)
                .where(
                    Task.action == "erase",
                    Task.status == "suspended",
                    ~holds_a_record(),
                    *narrow,
                )
                .values(status="pending", lease_expires_at=None)
                .returning(Task.id, Task.request_id)
                .execution_options(synchronize_session=False)
            )
        ).all()
    )
    for event_type, rows in (("tasks.suspended", suspended), ("tasks.resumed", resumed)):
        # One event per request, so each request's own log tells why its work paused.
        by_request: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
        for task_id, request_id in rows:
            by_request[request_id].append(task_id)
        for request_id, tasks in sorted(by_request.items()):
            tasks.sort()
            audit(
                session,
                actor,
                event_type,
                "task",
                tasks[0],
                {"tasks": [str(t) for t in tasks]},
                subject_request_id=request_id,
            )
    return [row.id for row in suspended], [row.id for row in resumed]


async def why_suspended(
    session: AsyncSession, task_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Any]]:
    """For each of these tasks, the holds on its held records and how many of them are
    restricted: ids and counts, nothing about whose records they are."""
    if not task_ids:
        return {}
    rows = (
        await session.execute(
            select(TaskRecord.task_id, Record.id, Record.state, RecordProfile)
            .join(Record, Record.id == TaskRecord.record_id)
            .join(RecordProfile, RecordProfile.id == Record.profile_id)
            .where(
                TaskRecord.task_id.in_(task_ids),
                Record.held.is_(True),
                Record.state != "erased",
            )
        )
    ).all()
    holds = await engine.holds_of(
        session,
        list({row.id: (row.id, engine.profile_facts(row.RecordProfile)) for row in rows}.values()),
    )
    hold_ids: dict[uuid.UUID, set[str]] = defaultdict(set)
    restricted: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
    for row in rows:
        hold_ids[row.task_id].update(holds.get(row.id, []))
        if row.state == "restricted":
            restricted[row.task_id].add(row.id)
    return {
        task_id: {"holds": sorted(hold_ids[task_id]), "restricted": len(restricted[task_id])}
        for task_id in task_ids
    }
