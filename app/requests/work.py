"""Work: what each request type asks of a scope's records. One task per (scope, system) for
access, portability, erasure and rectification; restriction and objection act at once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record as audit
from app.auth.service import Principal
from app.core.crypto import SecretBox
from app.core.db import utcnow
from app.core.identity import BlindIndex
from app.core.ids import new_id
from app.outbox import service as outbox
from app.outbox.payloads import scope_ids
from app.records.models import Record
from app.requests.completion import finish_scope
from app.requests.context import MARKETING, RequestContext, request_digests
from app.requests.erasure_work import needs_person, split_for_erasure
from app.requests.models import RequestScope, ScopeRecord, SubjectRequest
from app.requests.writes import NewWork
from app.retention.recompute import Scope, recompute
from app.suppressions.gpc import SALE_OPT_OUT_REGIMES, opt_out_of_sale_and_sharing
from app.suppressions.service import suppress
from app.tasks.holds import sync_suspensions


async def _scope_records(session: AsyncSession, scope: RequestScope) -> list[Any]:
    return list(
        (
            await session.execute(
                select(Record.id, Record.system, Record.record_ref, Record.state)
                .where(
                    Record.id.in_(
                        select(ScopeRecord.record_id).where(ScopeRecord.scope_id == scope.id)
                    ),
                    Record.state != "erased",
                )
                .order_by(Record.id)
            )
        ).all()
    )


def _add_tasks(
    session: AsyncSession,
    work: NewWork,
    request: SubjectRequest,
    scope: RequestScope,
    action: str,
    records: Sequence[Any],
    details: dict[str, Any] | None = None,
) -> int:
    """One task per (scope, system, action), listing that system's records."""
    by_system: dict[str, list[Any]] = defaultdict(list)
    for row in records:
        by_system[row.system].append(row)
    now = utcnow()
    for system, rows in sorted(by_system.items()):
        task_id = new_id()
        work.add_task(task_id, scope.id, system, action, rows, details or {}, now)
        outbox.emit(
            session, "task.created", scope_ids(request, scope, task_id=task_id), system=system
        )
    return len(by_system)


async def start_scope(
    session: AsyncSession,
    principal: Principal,
    request: SubjectRequest,
    scope: RequestScope,
    ctx: RequestContext,
    records: Sequence[Any] | None = None,
    work: NewWork | None = None,
) -> None:
    """Create the work the request's type asks of this scope's records. `records`: the
    scope's records that are not erased, in id order, when the caller has just read them;
    `work`: where the new rows wait when the caller writes the work of several scopes at once
    (written here otherwise)."""
    if records is None:
        records = await _scope_records(session, scope)
    own_work = work is None
    work = work or NewWork(request.id)
    created = 0
    if request.type in ("access", "portability"):
        created = _add_tasks(session, work, request, scope, "export", records)
    elif request.type == "erasure":
        split, lifted = await split_for_erasure(
            session, principal, request, scope, [r.id for r in records]
        )
        erasable = set(split.erasable)
        created = _add_tasks(
            session, work, request, scope, "erase", [r for r in records if r.id in erasable]
        )
        scope.outcome = {"erasable": len(erasable), "withheld": split.withheld}
        if lifted:
            scope.outcome["restrictions_lifted"] = [str(i) for i in lifted]
        if split.needs_person:
            scope.outcome["needs_person"] = split.needs_person
    elif request.type == "rectification":
        created = _add_tasks(
            session,
            work,
            request,
            scope,
            "rectify",
            records,
            {
                "fields": request.details.get("correction_fields", []),
                "corrections_sealed": request.details.get("corrections_sealed"),
            },
        )
    elif request.type == "restriction":
        lift = bool(request.details.get("lift"))
        targets = [r for r in records if r.state == ("restricted" if lift else "active")]
        if targets:
            ids = [r.id for r in targets]
            await session.execute(
                update(Record)
                .where(Record.id.in_(ids))
                .values(state="active" if lift else "restricted", updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            # Restricted records are held: nothing deletes them while the restriction lasts,
            # and erase work already out for them is suspended (lifting resumes it).
            await recompute(session, [Scope(record_ids=frozenset(ids))])
            await sync_suspensions(session, principal, ids)
        created = _add_tasks(
            session, work, request, scope, "unrestrict" if lift else "restrict", targets
        )
        scope.outcome = {"restricted" if not lift else "unrestricted": len(targets)}
    elif request.type == "objection":
        await suppress_for(
            session, principal, request, scope, await request_digests(session, request)
        )
    await session.flush()
    if own_work:
        await work.write(session)
    audit(
        session,
        principal,
        "request_scope.started",
        "request_scope",
        scope.id,
        {"controller_id": str(scope.controller_id), "tasks": created},
        subject_request_id=request.id,
    )
    outbox.emit(
        session, "scope.run_on_behalf", scope_ids(request, scope), controller=scope.controller_id
    )
    if needs_person(scope):
        # No exemption keeps these records (an open account, a retention setting): the scope
        # stays open until a person closes it (decision `handled_by_controller`, with the
        # reason the subject was given), so the request does not complete on its own.
        audit(
            session,
            principal,
            "request_scope.needs_person",
            "request_scope",
            scope.id,
            {
                "controller_id": str(scope.controller_id),
                "records": (scope.outcome or {})["needs_person"],
            },
            subject_request_id=request.id,
        )
    elif created == 0:
        await finish_scope(session, principal, request, scope)


async def suppress_for(
    session: AsyncSession,
    principal: Principal,
    request: SubjectRequest,
    scope: RequestScope,
    digests: list[BlindIndex],
) -> None:
    channel = request.details.get("channel") or "all"
    purpose = request.details.get("purpose") or MARKETING
    made = await suppress(
        session,
        # One suppression per identity: the check matches its legacy hashes itself.
        digests=[d for d in digests if not d.companion],
        channel=channel,
        purpose=purpose,
        controller_id=scope.controller_id,
        source="request",
        request_id=request.id,
        actor=principal,
    )
    outcome: dict[str, Any] = {"suppressions": len(made), "channel": channel, "purpose": purpose}
    gpc = bool(request.details.get("gpc"))
    if request.type == "opt_out" and (request.regime in SALE_OPT_OUT_REGIMES or gpc):
        # Under CCPA and the state laws like it, an opt-out is of sale and of sharing
        # (cross-context behavioural advertising), not of marketing e-mail alone.
        sold = await opt_out_of_sale_and_sharing(
            session,
            digests=digests,
            controller_id=scope.controller_id,
            source="gpc" if gpc else "request",
            request_id=request.id,
            actor=principal,
            linked=gpc,
        )
        outcome["sale_and_sharing"] = len(sold)
    # Set whole, once: a key added to the dict after a flush had written it was never stored
    # (the answer to filing showed it, a later read did not).
    scope.outcome = outcome


def open_corrections(details: dict[str, Any], box: SecretBox) -> dict[str, Any]:
    """The task details a system sees: corrections opened, the sealed text left out."""
    shown = {k: v for k, v in details.items() if k != "corrections_sealed"}
    if details.get("corrections_sealed"):
        shown["corrections"] = orjson.loads(
            box.open(details["corrections_sealed"], context="corrections")
        )
    return shown
