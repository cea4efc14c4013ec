"""Tasks: systems pull their work with a lease, then complete or fail it. On PostgreSQL a
claim locks rows with FOR UPDATE SKIP LOCKED, so two claimers never share a task; on SQLite
the writer lock taken at BEGIN IMMEDIATE serialises claims."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record as audit
from app.auth.service import Principal
from app.core.db import utcnow
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.pagination import PageParams, paginate
from app.records.erasure import tombstone
from app.records.models import Record
from app.requests.completion import on_task_done, on_task_retried
from app.requests.context import RequestContext
from app.requests.models import SubjectRequest
from app.requests.work import open_corrections
from app.retention import grounds
from app.tasks.holds import erase_allowed, sync_suspensions
from app.tasks.models import Task
from app.tasks.schemas import ClaimedTask, TaskOut, TaskPage, TaskStatus


async def claim(
    session: AsyncSession,
    principal: Principal,
    limit: int,
    lease_seconds: int,
    ctx: RequestContext,
) -> list[ClaimedTask]:
    now = utcnow()
    statement = (
        select(Task)
        .join(SubjectRequest, SubjectRequest.id == Task.request_id)
        .where(
            Task.system == principal.system_key,
            SubjectRequest.status == "in_progress",
            # Holds win: an erase task for a held record is never handed out, whether or not
            # it has been suspended yet.
            erase_allowed(),
            or_(
                Task.status == "pending",
                # A lapsed lease returns the task.
                and_(Task.status == "claimed", Task.lease_expires_at < now),
            ),
        )
        .order_by(Task.created_at, Task.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=Task)
    )
    tasks = list((await session.scalars(statement)).all())
    lease = now + timedelta(seconds=lease_seconds)
    for task in tasks:
        task.status = "claimed"
        task.lease_expires_at = lease
        task.attempts += 1
        task.claimed_by_key_id = principal.key_id
    await session.flush()
    if tasks:
        audit(
            session,
            principal,
            "tasks.claimed",
            "task",
            tasks[0].id,
            {"tasks": [str(t.id) for t in tasks], "lease_seconds": lease_seconds},
        )
    return [
        ClaimedTask(
            id=t.id,
            request_id=t.request_id,
            action=t.action,  # type: ignore[arg-type]
            record_refs=t.record_refs,
            details=open_corrections(t.details, ctx.box),
            lease_expires_at=lease,
        )
        for t in tasks
    ]


def task_rows(principal: Principal) -> ColumnElement[bool]:
    """Tasks a key sees: a system key its own system's."""
    return principal.visibility.where(system=lambda key: Task.system == key)


async def list_tasks(
    session: AsyncSession,
    principal: Principal,
    page: PageParams,
    *,
    status: TaskStatus | None = None,
    request_id: uuid.UUID | None = None,
) -> TaskPage:
    """A page of the tasks this key sees (a system key its own system's)."""
    statement = select(Task).where(task_rows(principal))
    if status is not None:
        statement = statement.where(Task.status == status)
    if request_id is not None:
        statement = statement.where(Task.request_id == request_id)
    rows, next_cursor = await paginate(session, statement, Task.id, page)
    return TaskPage(items=[TaskOut.model_validate(r) for r in rows], next_cursor=next_cursor)


async def get_task(
    session: AsyncSession, principal: Principal, task_id: uuid.UUID, *, records_first: bool = False
) -> Task:
    """The task, locked. `records_first` (completion) locks an erase task's records before
    the task: placing a hold locks records and then their tasks, and taking both in that
    order keeps a completion and a hold from deadlocking on PostgreSQL."""
    statement = select(Task).where(Task.id == task_id, task_rows(principal))
    if records_first:
        found = await session.scalar(statement)
        if found is not None and found.action == "erase":
            await session.execute(
                select(Record.id)
                .where(Record.id.in_([uuid.UUID(i) for i in found.record_ids]))
                .order_by(Record.id)
                .with_for_update()
            )
        statement = statement.execution_options(populate_existing=True)
    task = await session.scalar(statement.with_for_update())
    if task is None:
        raise NotFound("No task with this id")
    return task


async def _refuse_if_held(session: AsyncSession, principal: Principal, task: Task) -> None:
    """An erase task whose records are held is not completed, whenever the hold came: the
    task is suspended until the hold is released, and the refusal is audited (committed
    with the 409, which the router answers)."""
    record_ids = [uuid.UUID(i) for i in task.record_ids]
    held = await grounds.held_records(session, record_ids, lock=True)
    if not held:
        return
    if task.status == "claimed":
        task.status = "suspended"
        task.lease_expires_at = None
    await session.flush()
    audit(
        session,
        principal,
        "task.refused_held",
        "task",
        task.id,
        {"action": task.action, "system": task.system, **grounds.audit_details(held)},
        subject_request_id=task.request_id,
    )
    raise grounds.RecordsHeld(
        f"{len(held)} of the task's records are held (legal hold or restriction): "
        "they may not be erased until nothing holds them",
        await grounds.grounds_out(
            session,
            held,
            # Cited under the law the request was filed under.
            await session.scalar(
                select(SubjectRequest.regime).where(SubjectRequest.id == task.request_id)
            )
            or "gdpr",
        ),
    )


def _require_claimed(task: Task) -> None:
    if task.status != "claimed":
        raise Conflict(f"The task is {task.status}; claim it first")


async def complete(
    session: AsyncSession,
    principal: Principal,
    task: Task,
    result: dict[str, object],
    ctx: RequestContext,
) -> None:
    """Completes a claimed task. Reporting it again with the same result is answered as the
    first report was (a lost response may be retried); a different result is a conflict."""
    if task.status == "completed":
        kept = result if task.action in ("export", "erase") else None
        if task.result != kept:
            raise Conflict("The task was completed with a different result")
        return
    if task.action == "erase" and task.status in ("claimed", "suspended"):
        await _refuse_if_held(session, principal, task)
    _require_claimed(task)
    if task.action == "export" and not isinstance(result.get("data"), dict):
        raise Unprocessable(
            'An export task completes with {"data": {...}}', loc=["body", "result", "data"]
        )
    now = utcnow()
    if task.action == "erase":
        # The rows are locked and checked above; tombstone() skips a held record regardless.
        await tombstone(session, [uuid.UUID(i) for i in task.record_ids])
    task.status = "completed"
    task.completed_at = now
    task.lease_expires_at = None
    # An erase task's report goes into the erasure's receipt (ids and counts, no identities).
    task.result = result if task.action in ("export", "erase") else None
    await session.flush()
    audit(
        session,
        principal,
        "task.completed",
        "task",
        task.id,
        {"action": task.action, "system": task.system, "records": len(task.record_ids)},
        subject_request_id=task.request_id,
    )
    await on_task_done(session, principal, task, ctx)


async def fail(
    session: AsyncSession,
    principal: Principal,
    task: Task,
    error: str,
    retryable: bool,
    ctx: RequestContext,
) -> None:
    _require_claimed(task)
    task.error = error
    task.retryable = retryable
    task.lease_expires_at = None
    task.status = "pending" if retryable else "failed"
    await session.flush()
    audit(
        session,
        principal,
        "task.failed",
        "task",
        task.id,
        {"action": task.action, "system": task.system, "retryable": retryable},
        subject_request_id=task.request_id,
    )
    if not retryable:
        await on_task_done(session, principal, task, ctx)


async def retry(session: AsyncSession, principal: Principal, task: Task) -> None:
    """Someone acted on a failure: the task goes back to the queue, its scope back to work."""
    if task.status != "failed":
        raise Conflict(f"The task is {task.status}, not failed")
    request = await session.get(SubjectRequest, task.request_id)
    if request is None or request.status != "in_progress":
        raise Conflict("The task's request is closed")
    task.status = "pending"
    task.error = None
    await session.flush()
    if task.action == "erase":
        # Back to the queue, unless a hold or restriction came meanwhile: then suspended.
        await sync_suspensions(session, principal, [uuid.UUID(i) for i in task.record_ids])
        await session.refresh(task)
    await on_task_retried(session, principal, task)
    audit(
        session,
        principal,
        "task.retried",
        "task",
        task.id,
        {"system": task.system},
        subject_request_id=task.request_id,
    )
