"""Scopes: the subject's records found through the blind index and split by controller, one
scope each; a scope runs at once or waits for its controller's decision."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record as audit
from app.auth.service import Principal
from app.controllers.models import Controller
from app.controllers.service import platform_controller_id
from app.core.db import utcnow
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.hot_read import HotRead
from app.core.identity import BlindIndex
from app.core.ids import new_id
from app.outbox import service as outbox
from app.outbox.payloads import scope_ids
from app.purposes.models import Purpose
from app.records.models import Record
from app.records.queries import carrying
from app.requests import state
from app.requests.completion import finish_scope, maybe_complete
from app.requests.context import RequestContext, request_digests
from app.requests.models import RequestScope, SubjectRequest
from app.requests.queries import scope_rows
from app.requests.schemas import DecisionIn
from app.requests.work import start_scope, suppress_for
from app.requests.writes import NewTask, NewWork, OpenedScope


async def _platform_id(session: AsyncSession) -> uuid.UUID:
    platform = await platform_controller_id(session)
    if platform is None:
        raise Conflict("No platform controller: run `spix-dsr seed` first")
    return platform


async def open_scopes(
    session: AsyncSession,
    principal: Principal,
    request: SubjectRequest,
    ctx: RequestContext,
    digests: list[BlindIndex] | None = None,
) -> list[OpenedScope]:
    """Find the subject's records through the blind index and split them by controller
    (`digests`: the request's identities, when the caller has them at hand). Returns the
    scopes opened, with the records they resolved to and the tasks they created."""
    if digests is None:
        digests = await request_digests(session, request)
    if request.type == "opt_out":
        controller_id = request.filed_by_controller_id or await _platform_id(session)
        scope = RequestScope(
            id=new_id(),
            request_id=request.id,
            controller_id=controller_id,
            status=state.ScopeStatus.in_progress,
        )
        session.add(scope)
        await session.flush()
        await suppress_for(session, principal, request, scope, digests)
        await finish_scope(session, principal, request, scope)
        await maybe_complete(session, principal, request, ctx, [scope])
        return [OpenedScope(scope, 0, [])]
    by_controller, controllers = await records_by_controller(session, request, digests)
    if request.type == "objection" and request.filed_by_controller_id is None:
        # An objection to Spix's own processing reaches Spix even where no record is held.
        by_controller.setdefault(await _platform_id(session), [])
    missing = [c for c in by_controller if c not in controllers]
    if missing:
        controllers.update(
            (row.id, row)
            for row in await session.execute(
                select(*_CONTROLLER_FACTS).where(Controller.id.in_(missing))
            )
        )
    # An objection to processing other than direct marketing is weighed by a person (Art. 21(1)).
    weighed = request.type == "objection" and not await session.scalar(
        select(Purpose.objection_absolute).where(Purpose.key == request.details.get("purpose"))
    )
    opened: list[tuple[RequestScope, bool, list[Any]]] = []
    for controller_id, records in by_controller.items():
        controller = controllers[controller_id]
        # auto_execute counts only on a recorded standing instruction (Art. 28(3)(a)).
        standing = controller.auto_execute and controller.standing_instruction_ref is not None
        own = request.filed_by_controller_id == controller_id
        runs_now = not weighed and (controller.kind == "platform" or standing or own)
        scope = RequestScope(
            id=new_id(),
            request_id=request.id,
            controller_id=controller_id,
            status=state.ScopeStatus.in_progress
            if runs_now
            else state.ScopeStatus.awaiting_controller,
            instruction_ref=(
                f"standing:{controller.standing_instruction_ref}"
                if runs_now and standing and not own and controller.kind == "customer"
                else None
            ),
        )
        opened.append((scope, runs_now, records))
    # The scopes, their records, tasks and tasks' records are written together once all the
    # scopes have run (writes.NewWork).
    work = NewWork(request.id)
    for scope, _runs_now, records in opened:
        work.add_scope(scope, [r.id for r in records])
    for scope, runs_now, records in opened:
        if runs_now:
            await start_scope(session, principal, request, scope, ctx, records, work)
            if controllers[scope.controller_id].kind == "customer":
                tell_customer(session, principal, request, scope)
        else:
            # The customer decides (GDPR Art. 28(3)(e)); its dashboard queue lists the scope.
            audit(
                session,
                principal,
                "request_scope.forwarded",
                "request_scope",
                scope.id,
                {"controller_id": str(scope.controller_id), "records": len(records)},
                subject_request_id=request.id,
            )
            outbox.emit(
                session,
                "scope.awaiting_controller",
                scope_ids(request, scope),
                controller=scope.controller_id,
            )
    await work.write(session)
    await maybe_complete(session, principal, request, ctx, [scope for scope, _r, _rs in opened])
    tasks: dict[uuid.UUID, list[NewTask]] = defaultdict(list)
    for task in work.tasks:
        tasks[task.scope_id].append(task)
    return [OpenedScope(scope, len(records), tasks[scope.id]) for scope, _r, records in opened]


_CONTROLLER_FACTS = (
    Controller.id,
    Controller.kind,
    Controller.auto_execute,
    Controller.standing_instruction_ref,
)


async def records_by_controller(
    session: AsyncSession, request: SubjectRequest, digests: list[BlindIndex]
) -> tuple[dict[uuid.UUID, list[Any]], dict[uuid.UUID, Any]]:
    """The subject's records that are not erased (what start_scope works on), by controller,
    and what decides how each controller's scope runs."""
    by_controller: dict[uuid.UUID, list[Any]] = defaultdict(list)
    controllers: dict[uuid.UUID, Any] = {}
    connection = await session.connection()  # rows of columns, nothing to flush first
    filed_by = request.filed_by_controller_id
    params = {"digests": [d.digest for d in digests], "filed_by": filed_by}
    for row in await _RECORDS[filed_by is not None].rows(connection, params):
        by_controller[row.controller_id].append(row)
        controllers.setdefault(row.controller_id, row)
    return by_controller, controllers


def _records_statement(dialect: str, filed: bool) -> Any:
    """The identity index first, then the records by primary key (see records.carrying)."""
    ids = carrying(dialect)
    statement = (
        select(
            Record.id,
            Record.controller_id,
            Record.system,
            Record.record_ref,
            Record.state,
            *_CONTROLLER_FACTS[1:],  # the controller's id is the record's controller_id
        )
        .join(ids, ids.c.record_id == Record.id)
        .join(Controller, Controller.id == Record.controller_id)
        .where(Record.state != "erased")
    )
    if filed:
        statement = statement.where(Record.controller_id == bindparam("filed_by"))
    return statement.order_by(Record.id)


# Built once per filter (a statement built anew costs more than its run); on PostgreSQL run
# straight on the driver, on the session's connection (in its transaction once a statement has
# begun it; a read alone needs none under READ COMMITTED).
_RECORDS = {
    filed: HotRead(
        _records_statement("postgresql", filed), other=_records_statement("sqlite", filed)
    )
    for filed in (False, True)
}


def tell_customer(
    session: AsyncSession, principal: Principal, request: SubjectRequest, scope: RequestScope
) -> None:
    """The customer is told of every scope run on its behalf. For now an audit event its key
    can read; the worker's webhook will carry it to the customer."""
    audit(
        session,
        principal,
        "request_scope.customer_notified",
        "request_scope",
        scope.id,
        {
            "controller_id": str(scope.controller_id),
            "request_type": request.type,
            "instruction_ref": scope.instruction_ref,
            "decided_by_key_id": str(scope.decided_by_key_id) if scope.decided_by_key_id else None,
        },
        subject_request_id=request.id,
    )


async def decide_scope(
    session: AsyncSession,
    principal: Principal,
    request: SubjectRequest,
    controller_id: uuid.UUID,
    body: DecisionIn,
    ctx: RequestContext,
) -> None:
    scope = await session.scalar(
        select(RequestScope).where(
            RequestScope.request_id == request.id,
            RequestScope.controller_id == controller_id,
            scope_rows(principal),
        )
    )
    if scope is None:
        raise NotFound("No scope of this controller in this request")
    if request.status != state.RequestStatus.in_progress:
        raise Conflict(f"The request is {request.status}")
    customer = await session.scalar(
        select(Controller.kind == "customer").where(Controller.id == controller_id)
    )
    if customer and principal.role == "admin" and body.instruction_ref is None:
        # Spix decides on a customer's data only on that customer's instruction (GDPR Art.
        # 28(3)(a)): the privacy team names it (a ticket, an e-mail, the standing instruction).
        raise Unprocessable(
            "An admin decision on a customer's scope names the customer's instruction",
            loc=["body", "instruction_ref"],
        )
    event = {
        "approve": state.ScopeEvent.approved,
        "decline": state.ScopeEvent.declined,
        "handled_by_controller": state.ScopeEvent.handled_by_controller,
    }[body.decision]
    try:
        scope.status = state.scope_next(scope.status, event)
    except state.InvalidTransition as exc:
        raise Conflict(f"The scope is {scope.status}: no decision is pending") from exc
    scope.decision_reason = body.reason
    scope.decided_at = utcnow()
    scope.decided_by_key_id = principal.key_id
    scope.instruction_ref = body.instruction_ref
    await session.flush()
    audit(
        session,
        principal,
        f"request_scope.{body.decision}",
        "request_scope",
        scope.id,
        {"controller_id": str(controller_id), "instruction_ref": body.instruction_ref},
        subject_request_id=request.id,
    )
    if body.decision == "approve":
        await start_scope(session, principal, request, scope, ctx)
        if customer:
            tell_customer(session, principal, request, scope)
    await maybe_complete(session, principal, request, ctx)
