"""Calls on an open request by the privacy team or the filing controller: extend the
deadline once, cancel or deny."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record as audit
from app.auth.service import Principal
from app.core.db import utcnow
from app.core.errors import Conflict
from app.requests import clocks, state
from app.requests.completion import mark_closed
from app.requests.context import OPEN, RequestContext
from app.requests.models import RequestScope, SubjectRequest
from app.requests.queries import require_filer
from app.requests.schemas import DenyIn
from app.tasks.models import Task


async def extend(
    session: AsyncSession,
    principal: Principal,
    request: SubjectRequest,
    reason: str,
    ctx: RequestContext,
) -> None:
    require_filer(principal, request)
    if request.status not in OPEN:
        raise Conflict(f"The request is {request.status}")
    if request.extended_due_at is not None:
        raise Conflict("The request was extended once already")
    try:
        request.extended_due_at = clocks.extended_due(
            request.regime, request.due_at, ctx.clocks, request_type=request.type
        )
    except clocks.ExtensionNotAllowed as exc:
        raise Conflict(str(exc)) from exc
    request.extension_reason = reason
    await session.flush()
    audit(
        session,
        principal,
        "request.extended",
        "request",
        request.id,
        {"extended_due_at": request.extended_due_at.isoformat()},
        subject_request_id=request.id,
    )


async def close_early(
    session: AsyncSession,
    principal: Principal,
    request: SubjectRequest,
    event: state.RequestEvent,
    ctx: RequestContext,
    deny: DenyIn | None = None,
) -> None:
    """Cancel or deny: open scopes are closed and unclaimed tasks are no longer handed out."""
    require_filer(principal, request)
    try:
        request.status = state.request_next(request.status, event)
    except state.InvalidTransition as exc:
        raise Conflict(f"The request is {request.status}") from exc
    now = utcnow()
    mark_closed(request, now, ctx)
    if deny is not None:
        request.denial_reason = deny.reason
        request.outcome = {"denied": deny.reason, "detail": deny.detail}
    for scope in (
        await session.scalars(select(RequestScope).where(RequestScope.request_id == request.id))
    ).all():
        if not state.scope_is_done(scope.status):
            scope.status = state.scope_next(scope.status, state.ScopeEvent.cancelled)
    await session.execute(
        update(Task)
        .where(Task.request_id == request.id, Task.status.in_(["pending", "claimed", "suspended"]))
        .values(status="failed", error=f"request {request.status}", retryable=False)
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    audit(
        session,
        principal,
        f"request.{request.status}",
        "request",
        request.id,
        {"reason": deny.reason if deny else None},
        subject_request_id=request.id,
    )
