"""Calls on an open request by the privacy team or the filing controller: extend the
deadline once (before it passes, with the date the subject was told), acknowledge receipt,
cancel or deny (with the subject's right to complain)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record as audit
from app.auth.service import Principal
from app.core.db import utcnow
from app.core.errors import Conflict, Unprocessable
from app.requests import clocks, state
from app.requests.completion import mark_closed
from app.requests.context import OPEN, RequestContext
from app.requests.models import RequestScope, SubjectRequest
from app.requests.notices import denial_outcome
from app.requests.queries import require_filer
from app.requests.schemas import DenyIn, ExtendIn
from app.tasks.models import Task


async def extend(
    session: AsyncSession,
    principal: Principal,
    request: SubjectRequest,
    body: ExtendIn,
    ctx: RequestContext,
) -> None:
    require_filer(principal, request)
    if request.status not in OPEN:
        raise Conflict(f"The request is {request.status}")
    if request.extended_due_at is not None:
        raise Conflict("The request was extended once already")
    now = utcnow()
    # The subject must be told of an extension, with its reasons, within the original period
    # (GDPR Art. 12(3); CCPA 11 CCR 7021(b)): once that has passed it is too late to extend.
    if request.due_at < now:
        raise Conflict("The original deadline has passed: the request can no longer be extended")
    told = body.subject_notified_at
    if told < request.received_at or told > request.due_at:
        raise Unprocessable(
            "The subject must be told between receipt and the original deadline",
            loc=["body", "subject_notified_at"],
        )
    try:
        request.extended_due_at = clocks.extended_due(
            request.regime, request.due_at, ctx.clocks, request_type=request.type
        )
    except clocks.ExtensionNotAllowed as exc:
        raise Conflict(str(exc)) from exc
    request.extension_reason = body.reason
    request.extension_notified_at = told
    await session.flush()
    audit(
        session,
        principal,
        "request.extended",
        "request",
        request.id,
        {
            "extended_due_at": request.extended_due_at.isoformat(),
            "subject_notified_at": told.isoformat(),
        },
        subject_request_id=request.id,
    )


async def acknowledge(
    session: AsyncSession,
    principal: Principal,
    request: SubjectRequest,
    acknowledged_at: datetime | None,
) -> None:
    """Record that the subject was sent confirmation of receipt (CCPA 11 CCR 7021(a))."""
    require_filer(principal, request)
    if request.acknowledged_at is not None:
        raise Conflict("The request's receipt was acknowledged already")
    when = acknowledged_at or utcnow()
    if when < request.received_at:
        raise Unprocessable(
            "acknowledged_at is before the request was received", loc=["body", "acknowledged_at"]
        )
    request.acknowledged_at = when
    await session.flush()
    late = request.acknowledge_by is not None and when > request.acknowledge_by
    audit(
        session,
        principal,
        "request.acknowledged",
        "request",
        request.id,
        {"acknowledged_at": when.isoformat(), "late": late},
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
        # Art. 12(4) and its equivalents: a refusal says where the subject may complain.
        request.outcome = denial_outcome(request.regime, deny.reason, deny.detail)
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
