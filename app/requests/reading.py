"""One request as its caller reads it, in one statement: the request's row, its identity types,
the scopes this key sees (with their record counts) and their tasks, the last three as JSON
beside the row. The hot read (`GET /v1/requests/{id}`) runs it in a read session: one round
trip and no transaction; the writes that answer with the request run it in their own."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import orjson
from sqlalchemy import Select, Text, Uuid, bindparam, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from app.auth.service import Principal
from app.core.db import utcnow
from app.core.errors import NotFound
from app.core.hot_read import HotRead, ReadScope
from app.requests.intake import Filed
from app.requests.models import RequestIdentity, RequestScope, ScopeRecord, SubjectRequest
from app.requests.queries import controller_requests, request_out
from app.requests.schemas import HeldBy, RequestOut, ScopeOut, TaskSummary
from app.tasks.holds import why_suspended
from app.tasks.models import Task


class json_rows(FunctionElement[str]):
    """An aggregate: a JSON array (as text) holding one array per row of its arguments; NULL
    (PostgreSQL) or `[]` (SQLite) over no rows."""

    type = Text()
    name = "json_rows"
    inherit_cache = True


@compiles(json_rows, "postgresql")
def _json_rows_postgresql(element: json_rows, compiler: Any, **kw: Any) -> str:
    return f"json_agg(json_build_array({compiler.process(element.clauses, **kw)}))::text"


@compiles(json_rows, "sqlite")
def _json_rows_sqlite(element: json_rows, compiler: Any, **kw: Any) -> str:
    return f"json_group_array(json_array({compiler.process(element.clauses, **kw)}))"


class json_value(FunctionElement[Any]):
    """A JSON column as a value inside `json_rows` (SQLite keeps JSON as text and would put it
    in as a string)."""

    type = Text()
    name = "json_value"
    inherit_cache = True


@compiles(json_value, "postgresql")
def _json_value_postgresql(element: json_value, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(json_value, "sqlite")
def _json_value_sqlite(element: json_value, compiler: Any, **kw: Any) -> str:
    return f"json({compiler.process(element.clauses, **kw)})"


_ID = bindparam("request_id", type_=Uuid())
# A controller key's controller, bound when the statement runs: one statement per kind of key.
_OWN = bindparam("own", type_=Uuid())

_COLUMNS = (
    SubjectRequest.id,
    SubjectRequest.type,
    SubjectRequest.regime,
    SubjectRequest.status,
    SubjectRequest.channel,
    SubjectRequest.requester_kind,
    SubjectRequest.filed_by_controller_id,
    SubjectRequest.received_at,
    SubjectRequest.acknowledge_by,
    SubjectRequest.due_at,
    SubjectRequest.extended_due_at,
    SubjectRequest.extension_reason,
    SubjectRequest.verified_at,
    SubjectRequest.verification_method,
    SubjectRequest.extension_notified_at,
    SubjectRequest.acknowledged_at,
    SubjectRequest.clock_paused_at,
    SubjectRequest.denial_reason,
    SubjectRequest.closed_at,
    SubjectRequest.outcome,
    SubjectRequest.created_at,
    SubjectRequest.updated_at,
)


def _statement(principal: Principal) -> Select[Any]:
    visibility = principal.visibility
    scopes_seen = visibility.where(controller=lambda _own: RequestScope.controller_id == _OWN)
    requests_seen = visibility.where(controller=lambda _own: controller_requests(_OWN))
    identity_types = (
        select(json_rows(RequestIdentity.identity_type))
        .where(RequestIdentity.request_id == SubjectRequest.id)
        .scalar_subquery()
    )
    records = (
        select(func.count())
        .select_from(ScopeRecord)
        .where(ScopeRecord.scope_id == RequestScope.id)
        .scalar_subquery()
    )
    scopes = (
        select(
            json_rows(
                RequestScope.id,
                RequestScope.controller_id,
                RequestScope.status,
                RequestScope.decision_reason,
                RequestScope.instruction_ref,
                json_value(RequestScope.outcome),
                records,
            )
        )
        .where(RequestScope.request_id == SubjectRequest.id, scopes_seen)
        .scalar_subquery()
    )
    tasks = (
        select(
            json_rows(
                Task.id,
                Task.scope_id,
                Task.system,
                Task.action,
                Task.status,
                func.json_array_length(Task.record_ids),
            )
        )
        # By the request's own index on tasks, then the scopes this key sees among them.
        .where(
            Task.request_id == SubjectRequest.id,
            visibility.where(
                controller=lambda _own: exists().where(
                    RequestScope.id == Task.scope_id, RequestScope.controller_id == _OWN
                )
            ),
        )
        .scalar_subquery()
    )
    return select(
        *_COLUMNS,
        identity_types.label("identity_types"),
        scopes.label("scopes"),
        tasks.label("tasks"),
    ).where(SubjectRequest.id == _ID, requests_seen)


# Built once per kind of key (everything, controller, system, nothing), its compiled form
# cached with it.
_STATEMENTS: dict[str, HotRead] = {}


def _statement_for(principal: Principal) -> HotRead:
    kind = principal.visibility.kind
    statement = _STATEMENTS.get(kind)
    if statement is None:
        statement = _STATEMENTS[kind] = HotRead(_statement(principal))
    return statement


def _parsed(value: str | None) -> list[Any]:
    return orjson.loads(value) if value else []


async def read_request(reads: ReadScope, principal: Principal, request_id: uuid.UUID) -> RequestOut:
    """The request as this key sees it (404 when it sees none)."""
    params: dict[str, Any] = {"request_id": request_id}
    if principal.visibility.kind == "controller":
        params["own"] = principal.visibility.controller_id
    found = await reads.rows(_statement_for(principal), params)
    if not found:
        raise NotFound("No request with this id")
    row = found[0]
    task_rows = sorted(_parsed(row.tasks), key=lambda t: uuid.UUID(t[0]))
    suspended = [uuid.UUID(t[0]) for t in task_rows if t[4] == "suspended"]
    held_by = {
        task_id: HeldBy.model_validate(why)
        for task_id, why in (
            await why_suspended(await reads.session(), suspended) if suspended else {}
        ).items()
    }
    tasks: dict[uuid.UUID, list[TaskSummary]] = defaultdict(list)
    for task_id, scope_id, system, action, status, records in task_rows:
        task_uuid = uuid.UUID(task_id)
        tasks[uuid.UUID(scope_id)].append(
            TaskSummary(
                id=task_uuid,
                system=system,
                action=action,
                status=status,
                records=records,
                held_by=held_by.get(task_uuid),
            )
        )
    scopes = []
    for scope_id, controller_id, status, reason, instruction_ref, outcome, records in sorted(
        _parsed(row.scopes), key=lambda s: uuid.UUID(s[0])
    ):
        scopes.append(
            ScopeOut(
                controller_id=uuid.UUID(controller_id),
                status=status,
                records=records,
                tasks=tasks[uuid.UUID(scope_id)],
                decision_reason=reason,
                instruction_ref=instruction_ref,
                outcome=outcome,
            )
        )
    types = [t for (t,) in _parsed(row.identity_types)]
    return request_out(row, types, scopes, principal, utcnow())


async def filed_out(session: AsyncSession, principal: Principal, filed: Filed) -> RequestOut:
    """A request just filed, as `read_request` would read it, from what filing it made: its
    row as written, its identity types, and the scopes it opened with their new tasks (all
    pending: nothing holds them yet)."""
    await session.flush()  # the row as the database has it (its last update time)
    visibility = principal.visibility
    scopes = [
        ScopeOut(
            controller_id=opened.scope.controller_id,
            status=opened.scope.status,  # type: ignore[arg-type]
            records=opened.records,
            tasks=[
                TaskSummary(
                    id=task.id,
                    system=task.system,
                    action=task.action,  # type: ignore[arg-type]
                    status=task.status,  # type: ignore[arg-type]
                    records=task.records,
                )
                for task in sorted(opened.tasks, key=lambda t: t.id)
            ],
            decision_reason=opened.scope.decision_reason,
            instruction_ref=opened.scope.instruction_ref,
            outcome=opened.scope.outcome,
        )
        for opened in sorted(filed.scopes, key=lambda o: o.scope.id)
        # As scope_rows: everything, or a controller key's own scopes.
        if visibility.everything
        or (
            visibility.kind == "controller"
            and opened.scope.controller_id == visibility.controller_id
        )
    ]
    return request_out(
        filed.request,
        filed.identity_types,
        scopes,
        principal,
        utcnow(),
        verification=filed.challenge,
    )
