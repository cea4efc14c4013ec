"""Completion: a scope is done when its tasks are, the request when its scopes are; the
outcome says what was done and what was not. Tasks report back here."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record as audit
from app.auth.service import Principal
from app.core.db import utcnow
from app.requests import state
from app.requests.context import RequestContext
from app.requests.models import RequestScope, SubjectRequest
from app.requests.receipts import on_erasure_completed
from app.tasks.models import Task


async def finish_scope(
    session: AsyncSession, principal: Principal, request: SubjectRequest, scope: RequestScope
) -> None:
    scope.status = state.scope_next(scope.status, state.ScopeEvent.tasks_done)
    await session.flush()
    audit(
        session,
        principal,
        "request_scope.completed",
        "request_scope",
        scope.id,
        {"controller_id": str(scope.controller_id)},
        subject_request_id=request.id,
    )


def mark_closed(request: SubjectRequest, now: datetime, ctx: RequestContext) -> None:
    request.closed_at = now
    request.purge_contact_after = now + ctx.proof_period


async def maybe_complete(
    session: AsyncSession,
    principal: Principal,
    request: SubjectRequest,
    ctx: RequestContext,
    scopes: Sequence[RequestScope] | None = None,
) -> None:
    """Complete the request when every scope is done (`scopes`: all of them, when the caller
    has just opened them)."""
    if request.status != state.RequestStatus.in_progress:
        return
    if scopes is None:
        scopes = (
            await session.scalars(select(RequestScope).where(RequestScope.request_id == request.id))
        ).all()
    if not state.request_can_complete(s.status for s in scopes):
        return
    request.status = state.request_next(request.status, state.RequestEvent.scopes_done)
    mark_closed(request, utcnow(), ctx)
    request.outcome = await _summarise(session, request, list(scopes))
    await session.flush()
    if request.type == "erasure":
        assert request.closed_at is not None
        await on_erasure_completed(
            session, request, list(scopes), request.closed_at, ctx.erasure_memory
        )
    audit(
        session,
        principal,
        "request.completed",
        "request",
        request.id,
        {"scopes": len(scopes)},
        subject_request_id=request.id,
    )


async def _summarise(
    session: AsyncSession, request: SubjectRequest, scopes: list[RequestScope]
) -> dict[str, Any]:
    """What was done, per controller and system, and what was not and why."""
    tasks = (
        await session.scalars(select(Task).where(Task.request_id == request.id).order_by(Task.id))
    ).all()
    by_scope: dict[uuid.UUID, list[Task]] = defaultdict(list)
    for task in tasks:
        by_scope[task.scope_id].append(task)
    summary = []
    for scope in scopes:
        outcome = scope.outcome or {}
        summary.append(
            {
                "controller_id": str(scope.controller_id),
                "status": scope.status,
                "reason": scope.decision_reason,
                "done": [
                    {
                        "system": t.system,
                        "action": t.action,
                        "records": len(t.record_ids),
                        "status": t.status,
                    }
                    for t in by_scope[scope.id]
                ],
                "not_done": outcome.get("withheld", []),
                **{k: v for k, v in outcome.items() if k != "withheld"},
            }
        )
    return {"type": request.type, "scopes": summary}


async def on_task_done(
    session: AsyncSession, principal: Principal, task: Task, ctx: RequestContext
) -> None:
    """A task completed or failed for good: move its scope, and maybe the request."""
    # The request's row lock makes the reports of one request's tasks take turns. Each
    # statement after it reads what the earlier reports committed, so the last one closes
    # the scope and the request; without it two last tasks reported at once each counted the
    # other as open and the request stayed in progress (PostgreSQL; SQLite's writer lock
    # already serialises them).
    request = await session.get(
        SubjectRequest, task.request_id, with_for_update=True, populate_existing=True
    )
    scope = await session.get(RequestScope, task.scope_id, populate_existing=True)
    assert scope is not None and request is not None
    if task.status == "failed":
        if scope.status == state.ScopeStatus.in_progress:
            scope.status = state.scope_next(scope.status, state.ScopeEvent.task_failed)
            audit(
                session,
                principal,
                "request_scope.failed",
                "request_scope",
                scope.id,
                {"task_id": str(task.id), "system": task.system},
                subject_request_id=request.id,
            )
        await session.flush()
        return
    open_tasks = await session.scalar(
        select(func.count())
        .select_from(Task)
        .where(Task.scope_id == scope.id, Task.status != "completed")
    )
    # An erasure scope a person must close (erasure_work.needs_person) stays open.
    if (
        open_tasks == 0
        and scope.status == state.ScopeStatus.in_progress
        and not (scope.outcome or {}).get("needs_person")
    ):
        await finish_scope(session, principal, request, scope)
        await maybe_complete(session, principal, request, ctx)


async def on_task_retried(session: AsyncSession, principal: Principal, task: Task) -> None:
    scope = await session.get(RequestScope, task.scope_id)
    assert scope is not None
    if scope.status == state.ScopeStatus.failed:
        scope.status = state.scope_next(scope.status, state.ScopeEvent.retried)
        await session.flush()
