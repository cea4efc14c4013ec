"""Reading requests: what a key sees, the request pages with their scopes and tasks, the
overdue filter and the gauges."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, case, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.audit.queries import chained_events, page_events
from app.audit.schemas import AuditEventOut
from app.auth.service import Principal
from app.core.db import utcnow
from app.core.errors import Forbidden, NotFound
from app.core.identity import IdentityType
from app.core.pagination import Page, PageParams, paginate
from app.requests import state
from app.requests.context import OPEN
from app.requests.models import RequestIdentity, RequestScope, ScopeRecord, SubjectRequest
from app.requests.schemas import (
    HeldBy,
    RequestCreated,
    RequestOut,
    RequestPage,
    RequestStatus,
    RequestType,
    ScopeOut,
    ScopeStatus,
    TaskSummary,
)
from app.tasks.holds import why_suspended
from app.tasks.models import Task


def scope_rows(principal: Principal) -> ColumnElement[bool]:
    """Scopes a key sees: a controller key its own controller's, never another customer's."""
    return principal.visibility.where(controller=lambda own: RequestScope.controller_id == own)


def controller_requests(own: Any) -> ColumnElement[bool]:
    """The requests a controller key sees: those it filed or that have a scope of its own."""
    return or_(
        SubjectRequest.filed_by_controller_id == own,
        exists().where(
            RequestScope.request_id == SubjectRequest.id,
            RequestScope.controller_id == own,
        ),
    )


def visible(principal: Principal) -> Select[SubjectRequest]:
    """A controller key sees requests it filed or that have a scope of its own."""
    return select(SubjectRequest).where(principal.visibility.where(controller=controller_requests))


async def get_request(
    session: AsyncSession, principal: Principal, request_id: uuid.UUID
) -> SubjectRequest:
    found = await session.scalar(visible(principal).where(SubjectRequest.id == request_id))
    if found is None:
        raise NotFound("No request with this id")
    return found


def effective_due(request: SubjectRequest) -> datetime:
    return request.extended_due_at or request.due_at


def paused_clause() -> Any:
    """Waiting for identity evidence under a clock that stands still for it (UK GDPR 12A)."""
    return (SubjectRequest.status == str(state.RequestStatus.pending_verification)) & (
        SubjectRequest.clock_paused_at.is_not(None)
    )


def is_paused(request: SubjectRequest) -> bool:
    return (
        request.status == state.RequestStatus.pending_verification
        and request.clock_paused_at is not None
    )


def overdue_clause(now: datetime) -> Any:
    return (
        SubjectRequest.status.in_([str(s) for s in OPEN])
        & (func.coalesce(SubjectRequest.extended_due_at, SubjectRequest.due_at) < now)
        & ~paused_clause()
    )


def acknowledgement_overdue_clause(now: datetime) -> Any:
    """Open, receipt not confirmed, and past the day it had to be (CCPA 11 CCR 7021(a))."""
    return (
        SubjectRequest.status.in_([str(s) for s in OPEN])
        & SubjectRequest.acknowledged_at.is_(None)
        & (SubjectRequest.acknowledge_by < now)
    )


def acknowledgement_overdue(request: SubjectRequest, now: datetime) -> bool:
    return (
        request.status in OPEN
        and request.acknowledged_at is None
        and request.acknowledge_by is not None
        and request.acknowledge_by < now
    )


async def describe(
    session: AsyncSession, principal: Principal, requests: Sequence[SubjectRequest]
) -> list[RequestOut]:
    """Requests with their scopes and tasks, in three queries for the whole page."""
    now = utcnow()
    ids = [r.id for r in requests]
    scopes: dict[uuid.UUID, list[RequestScope]] = defaultdict(list)
    counts: dict[uuid.UUID, int] = {}
    tasks: dict[uuid.UUID, list[TaskSummary]] = defaultdict(list)
    types: dict[uuid.UUID, list[str]] = defaultdict(list)
    if ids:
        scope_query = select(RequestScope).where(
            RequestScope.request_id.in_(ids), scope_rows(principal)
        )
        for scope in (await session.scalars(scope_query.order_by(RequestScope.id))).all():
            scopes[scope.request_id].append(scope)
        scope_ids = [s.id for ss in scopes.values() for s in ss]
        if scope_ids:
            counts = {
                sid: n
                for sid, n in await session.execute(
                    select(ScopeRecord.scope_id, func.count())
                    .where(ScopeRecord.scope_id.in_(scope_ids))
                    .group_by(ScopeRecord.scope_id)
                )
            }
            found = (
                await session.scalars(
                    select(Task).where(Task.scope_id.in_(scope_ids)).order_by(Task.id)
                )
            ).all()
            # Suspended erase work says what holds it: hold ids and restricted records.
            held_by = {
                task_id: HeldBy.model_validate(why)
                for task_id, why in (
                    await why_suspended(session, [t.id for t in found if t.status == "suspended"])
                ).items()
            }
            for task in found:
                tasks[task.scope_id].append(
                    TaskSummary(
                        id=task.id,
                        system=task.system,
                        action=task.action,  # type: ignore[arg-type]
                        status=task.status,  # type: ignore[arg-type]
                        records=len(task.record_ids),
                        held_by=held_by.get(task.id),
                    )
                )
        for request_id, identity_type in await session.execute(
            select(RequestIdentity.request_id, RequestIdentity.identity_type).where(
                RequestIdentity.request_id.in_(ids)
            )
        ):
            types[request_id].append(identity_type)
    return [
        request_out(
            r,
            types[r.id],
            [
                ScopeOut(
                    controller_id=s.controller_id,
                    status=s.status,  # type: ignore[arg-type]
                    records=counts.get(s.id, 0),
                    tasks=tasks[s.id],
                    decision_reason=s.decision_reason,
                    instruction_ref=s.instruction_ref,
                    outcome=s.outcome,
                )
                for s in scopes[r.id]
            ],
            principal,
            now,
        )
        for r in requests
    ]


def request_out(
    r: Any,
    identity_types: Iterable[str],
    scopes: list[ScopeOut],
    principal: Principal,
    now: datetime,
    **extra: Any,
) -> RequestOut:
    """The answer for one request (an ORM object or a row with the same names), its identity
    types and the scopes this key sees; with `extra` (the challenge) the answer to filing."""
    return (RequestCreated if extra else RequestOut)(
        id=r.id,
        type=r.type,
        regime=r.regime,
        status=r.status,
        channel=r.channel,
        requester_kind=r.requester_kind,
        identity_types=sorted({IdentityType(t) for t in identity_types}),
        filed_by_controller_id=r.filed_by_controller_id,
        received_at=r.received_at,
        acknowledge_by=r.acknowledge_by,
        due_at=r.due_at,
        extended_due_at=r.extended_due_at,
        extension_reason=r.extension_reason,
        overdue=r.status in OPEN and effective_due(r) < now and not is_paused(r),
        verified_at=r.verified_at,
        verification_method=r.verification_method,
        extension_notified_at=r.extension_notified_at,
        acknowledged_at=r.acknowledged_at,
        acknowledgement_overdue=acknowledgement_overdue(r, now),
        clock_paused_at=r.clock_paused_at if is_paused(r) else None,
        denial_reason=r.denial_reason,
        closed_at=r.closed_at,
        scopes=scopes,
        # A controller key reads its own scope's part of the outcome only.
        outcome=_outcome_for(r.outcome, principal),
        created_at=r.created_at,
        updated_at=r.updated_at,
        **extra,
    )


def _outcome_for(outcome: dict[str, Any] | None, principal: Principal) -> dict[str, Any] | None:
    if outcome is None or principal.visibility.everything:
        return outcome
    own = str(principal.visibility.controller_id)
    return {
        **outcome,
        "scopes": [s for s in outcome.get("scopes", []) if s["controller_id"] == own],
    }


async def list_requests(
    session: AsyncSession,
    principal: Principal,
    page: PageParams,
    *,
    status: RequestStatus | None = None,
    type: RequestType | None = None,
    overdue: bool | None = None,
    controller_id: uuid.UUID | None = None,
    scope_status: ScopeStatus | None = None,
    acknowledgement_overdue: bool | None = None,
) -> RequestPage:
    """A page of the requests this key sees; `overdue=True` keeps those past their deadline."""
    statement = visible(principal)
    if status is not None:
        statement = statement.where(SubjectRequest.status == status)
    if type is not None:
        statement = statement.where(SubjectRequest.type == type)
    if overdue is True:
        statement = statement.where(overdue_clause(utcnow()))
    if acknowledgement_overdue is True:
        statement = statement.where(acknowledgement_overdue_clause(utcnow()))
    # Filters on scopes read only the scopes this key sees: a controller key's queue is its
    # own scopes, and naming another customer finds nothing (it would tell that the other
    # customer holds the same subject).
    if controller_id is not None:
        statement = statement.where(
            select(RequestScope.id)
            .where(
                RequestScope.request_id == SubjectRequest.id,
                RequestScope.controller_id == controller_id,
                scope_rows(principal),
            )
            .exists()
        )
    if scope_status is not None:
        statement = statement.where(
            select(RequestScope.id)
            .where(
                RequestScope.request_id == SubjectRequest.id,
                RequestScope.status == scope_status,
                scope_rows(principal),
            )
            .exists()
        )
    rows, next_cursor = await paginate(session, statement, SubjectRequest.id, page)
    return RequestPage(items=await describe(session, principal, rows), next_cursor=next_cursor)


async def request_events(
    session: AsyncSession, principal: Principal, request_id: uuid.UUID, page: PageParams
) -> Page[AuditEventOut]:
    """The request's audit trail: the privacy team's, or the filing controller's."""
    found = await get_request(session, principal, request_id)
    require_filer(principal, found)
    statement = chained_events().where(AuditEvent.subject_request_id == found.id)
    return await page_events(session, statement, page)


def require_filer(principal: Principal, request: SubjectRequest) -> None:
    """Lifecycle calls belong to the privacy team, or the controller that filed the request."""
    if principal.role == "controller" and request.filed_by_controller_id != principal.controller_id:
        raise Forbidden("Only the privacy team or the filing controller may do this")


async def open_and_overdue(session: AsyncSession) -> dict[str, tuple[int, int]]:
    """Open and overdue requests per regime, for the metrics gauges."""
    now = utcnow()
    overdue = func.sum(case((overdue_clause(now), 1), else_=0))
    rows = await session.execute(
        select(SubjectRequest.regime, func.count(), overdue)
        .where(SubjectRequest.status.in_([str(s) for s in OPEN]))
        .group_by(SubjectRequest.regime)
    )
    return {regime: (int(total), int(late or 0)) for regime, total, late in rows}


async def acknowledgements_overdue(session: AsyncSession) -> dict[str, int]:
    """Open requests whose confirmation of receipt is late, per regime, for a gauge."""
    rows = await session.execute(
        select(SubjectRequest.regime, func.count())
        .where(acknowledgement_overdue_clause(utcnow()))
        .group_by(SubjectRequest.regime)
    )
    return {regime: int(count) for regime, count in rows}
