"""Subject requests end to end: intake, verification, one scope per controller, the work each
type asks for, and the outcome. Every status change goes through app/requests/state.py."""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Select, case, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record as audit
from app.auth.service import Principal
from app.controllers.models import Controller
from app.core.crypto import SecretBox
from app.core.db import utcnow
from app.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.core.identity import BlindIndex, BlindIndexer, IdentityType, InvalidIdentity
from app.core.ids import new_id
from app.outbox import service as outbox
from app.outbox.payloads import scope_ids
from app.purposes.models import Purpose
from app.records.models import Record, RecordIdentity
from app.requests import clocks, state
from app.requests.models import RequestIdentity, RequestScope, ScopeRecord, SubjectRequest
from app.requests.schemas import (
    DecisionIn,
    DenyIn,
    HeldBy,
    RequestCreate,
    RequestOut,
    ScopeOut,
    TaskSummary,
    VerificationChallenge,
    VerifyIn,
)
from app.retention.recompute import Scope, recompute
from app.suppressions.service import suppress
from app.tasks.holds import sync_suspensions, why_suspended
from app.tasks.models import Task, TaskRecord

OPEN = (state.RequestStatus.pending_verification, state.RequestStatus.in_progress)
MARKETING = "marketing.communications"
# Types whose work is done on records, one task per (scope, system).
TASK_ACTIONS = {
    "access": "export",
    "portability": "export",
    "erasure": "erase",
    "rectification": "rectify",
}


@dataclass(frozen=True)
class RequestContext:
    """What the request service needs from the running app."""

    indexer: BlindIndexer
    box: SecretBox
    clocks: dict[str, clocks.RegimeClock]
    holidays: frozenset[date]
    code_ttl: timedelta
    max_attempts: int
    proof_period: timedelta


class VerificationFailed(Exception):
    """A wrong or expired code: answered 422, but the attempt it counts must be committed."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


# Reading ---------------------------------------------------------------------------------


def scope_rows(principal: Principal) -> ColumnElement[bool]:
    """Scopes a key sees: a controller key its own controller's, never another customer's."""
    return principal.visibility.where(controller=lambda own: RequestScope.controller_id == own)


def visible(principal: Principal) -> Select[SubjectRequest]:
    """A controller key sees requests it filed or that have a scope of its own."""
    return select(SubjectRequest).where(
        principal.visibility.where(
            controller=lambda own: or_(
                SubjectRequest.filed_by_controller_id == own,
                exists().where(
                    RequestScope.request_id == SubjectRequest.id,
                    RequestScope.controller_id == own,
                ),
            )
        )
    )


async def get_request(
    session: AsyncSession, principal: Principal, request_id: uuid.UUID
) -> SubjectRequest:
    found = await session.scalar(visible(principal).where(SubjectRequest.id == request_id))
    if found is None:
        raise NotFound("No request with this id")
    return found


def effective_due(request: SubjectRequest) -> datetime:
    return request.extended_due_at or request.due_at


def overdue_clause(now: datetime) -> Any:
    return SubjectRequest.status.in_([str(s) for s in OPEN]) & (
        func.coalesce(SubjectRequest.extended_due_at, SubjectRequest.due_at) < now
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
    types: dict[uuid.UUID, list[IdentityType]] = defaultdict(list)
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
            types[request_id].append(IdentityType(identity_type))
    return [
        RequestOut(
            id=r.id,
            type=r.type,  # type: ignore[arg-type]
            regime=r.regime,  # type: ignore[arg-type]
            status=r.status,  # type: ignore[arg-type]
            channel=r.channel,
            requester_kind=r.requester_kind,  # type: ignore[arg-type]
            identity_types=sorted(set(types[r.id])),
            filed_by_controller_id=r.filed_by_controller_id,
            received_at=r.received_at,
            acknowledge_by=r.acknowledge_by,
            due_at=r.due_at,
            extended_due_at=r.extended_due_at,
            extension_reason=r.extension_reason,
            overdue=r.status in OPEN and effective_due(r) < now,
            verified_at=r.verified_at,
            verification_method=r.verification_method,
            denial_reason=r.denial_reason,
            closed_at=r.closed_at,
            scopes=[
                ScopeOut(
                    controller_id=s.controller_id,
                    status=s.status,  # type: ignore[arg-type]
                    records=counts.get(s.id, 0),
                    tasks=tasks[s.id],
                    decision_reason=s.decision_reason,
                    outcome=s.outcome,
                )
                for s in scopes[r.id]
            ],
            # A controller key reads its own scope's part of the outcome only.
            outcome=_outcome_for(r.outcome, principal),
            created_at=r.created_at,
            updated_at=r.updated_at,
        )
        for r in requests
    ]


def _outcome_for(outcome: dict[str, Any] | None, principal: Principal) -> dict[str, Any] | None:
    if outcome is None or principal.visibility.everything:
        return outcome
    own = str(principal.visibility.controller_id)
    return {
        **outcome,
        "scopes": [s for s in outcome.get("scopes", []) if s["controller_id"] == own],
    }


# Intake ----------------------------------------------------------------------------------


async def file_request(
    session: AsyncSession, principal: Principal, body: RequestCreate, ctx: RequestContext
) -> tuple[SubjectRequest, VerificationChallenge | None]:
    now = utcnow()
    filed_by = await _filing_controller(session, principal, body.controller_id)
    await _check_details(session, body)
    received_at = body.received_at or now
    if received_at > now + timedelta(minutes=5):
        raise Unprocessable("received_at is in the future", loc=["body", "received_at"])
    agent = body.requester.kind == "authorized_agent"
    if agent and body.verified and body.requester.authorization_note is None:
        raise Unprocessable(
            "An agent's request needs a note of the subject's signed permission",
            loc=["body", "requester", "authorization_note"],
        )
    digests = _digests(body, ctx.indexer, filed_by)
    due = clocks.deadlines(body.regime, body.type, received_at, ctx.clocks, ctx.holidays)
    request = SubjectRequest(
        id=new_id(),
        type=body.type,
        regime=body.regime,
        status=state.RequestStatus.pending_verification,
        channel=body.channel,
        filed_by_controller_id=filed_by,
        filed_by_key_id=principal.key_id,
        requester_kind=body.requester.kind,
        received_at=received_at,
        acknowledge_by=due.acknowledge_by,
        due_at=due.due_at,
        details=_stored_details(body, ctx.box),
    )
    request.contact_sealed = ctx.box.seal(
        orjson.dumps(
            {
                "name": body.requester.name,
                "email": body.requester.email,
                "identities": [i.model_dump(mode="json") for i in body.identities],
            }
        ).decode(),
        context=f"request:{request.id}",
    )
    request.details["agent_authorization"] = body.requester.authorization_note is not None
    session.add(request)
    await session.flush()
    session.add_all(
        RequestIdentity(
            request_id=request.id, identity_type=str(d.type), digest=d.digest, key_id=d.key_id
        )
        for d in digests
    )
    await session.flush()
    audit(
        session,
        principal,
        "request.received",
        "request",
        request.id,
        {
            "type": body.type,
            "regime": body.regime,
            "channel": body.channel,
            "requester": body.requester.kind,
            "filed_by_controller_id": str(filed_by) if filed_by else None,
        },
        subject_request_id=request.id,
    )
    # An opt-out needs no verification (CCPA 11 CCR 7026); a trusted session has verified.
    if body.verified or body.type == "opt_out":
        method = "trusted_session" if body.verified else "not_required"
        await _on_verified(session, principal, request, method, None, ctx)
        return request, None
    code = f"{secrets.randbelow(10**6):06d}"
    request.verification_method = "code"
    request.verification_code_hash = ctx.indexer.mac("verify", f"{request.id}:{code}")
    request.verification_expires_at = now + ctx.code_ttl
    await session.flush()
    return request, VerificationChallenge(code=code, expires_at=request.verification_expires_at)


async def _filing_controller(
    session: AsyncSession, principal: Principal, controller_id: uuid.UUID | None
) -> uuid.UUID | None:
    if principal.role == "controller":
        if controller_id is not None and controller_id != principal.controller_id:
            raise Unprocessable(
                "A controller key files requests for its own controller",
                loc=["body", "controller_id"],
            )
        return principal.controller_id
    if controller_id is not None and await session.get(Controller, controller_id) is None:
        raise Unprocessable("No controller with this id", loc=["body", "controller_id"])
    return controller_id


async def _check_details(session: AsyncSession, body: RequestCreate) -> None:
    details = body.details
    if body.type == "rectification" and not details.corrections:
        raise Unprocessable(
            "A rectification names its corrections", loc=["body", "details", "corrections"]
        )
    if body.type == "objection" and details.purpose is None:
        raise Unprocessable(
            "An objection names the purpose objected to", loc=["body", "details", "purpose"]
        )
    purpose = details.purpose or (MARKETING if body.type == "opt_out" else None)
    if purpose is not None and await session.get(Purpose, purpose) is None:
        raise Unprocessable(f"No purpose {purpose!r}", loc=["body", "details", "purpose"])


def _digests(
    body: RequestCreate, indexer: BlindIndexer, controller_id: uuid.UUID | None
) -> list[BlindIndex]:
    found: dict[str, BlindIndex] = {}
    for position, identity in enumerate(body.identities):
        try:
            # Under every normalisation version in use: the request finds records whose
            # hashes were stored under an older one.
            blinds = indexer.all_of(identity, controller_id=controller_id)
        except InvalidIdentity as exc:
            raise Unprocessable(str(exc), loc=["body", "identities", position, "value"]) from None
        for blind in blinds:
            found.setdefault(blind.digest, blind)
    return list(found.values())


def _stored_details(body: RequestCreate, box: SecretBox) -> dict[str, Any]:
    details = body.details
    stored: dict[str, Any] = {
        "channel": details.channel,
        "purpose": details.purpose,
        "lift": details.lift,
    }
    if details.corrections:
        # Corrections are personal data: sealed here, opened only for the systems' tasks.
        stored["correction_fields"] = sorted(details.corrections)
        stored["corrections_sealed"] = box.seal(
            orjson.dumps(details.corrections).decode(), context="corrections"
        )
    return stored


# Verification ----------------------------------------------------------------------------


async def verify(
    session: AsyncSession,
    principal: Principal,
    request: SubjectRequest,
    body: VerifyIn,
    ctx: RequestContext,
) -> None:
    if request.status != state.RequestStatus.pending_verification:
        raise Conflict(f"The request is {request.status}, not waiting for verification")
    if body.method == "manual":
        if principal.role != "admin":
            raise Forbidden("Only the privacy team verifies by manual decision")
        if body.note is None:
            raise Unprocessable("A manual verification records its note", loc=["body", "note"])
        await _on_verified(session, principal, request, "manual", body.note, ctx)
        return
    if body.code is None:
        raise Unprocessable("Send the code the subject received", loc=["body", "code"])
    now = utcnow()
    expires = request.verification_expires_at
    if request.verification_code_hash is None or expires is None or expires < now:
        raise VerificationFailed("The code has expired; verify manually or file again")
    given = ctx.indexer.mac("verify", f"{request.id}:{body.code}")
    if not hmac.compare_digest(given, request.verification_code_hash):
        request.verification_attempts += 1
        left = ctx.max_attempts - request.verification_attempts
        audit(
            session,
            principal,
            "request.verification_failed",
            "request",
            request.id,
            {"attempts": request.verification_attempts},
            subject_request_id=request.id,
        )
        if left <= 0:
            request.status = state.request_next(
                request.status, state.RequestEvent.failed_verification
            )
            _close(request, now, ctx)
            request.denial_reason = "unverifiable"
            request.verification_code_hash = None
            audit(
                session,
                principal,
                "request.denied",
                "request",
                request.id,
                {"reason": "unverifiable", "after_attempts": request.verification_attempts},
                subject_request_id=request.id,
            )
            await session.flush()
            raise VerificationFailed("Too many wrong codes: the request is denied as unverifiable")
        await session.flush()
        raise VerificationFailed(f"Wrong code; {left} attempts left")
    if request.requester_kind == "authorized_agent" and not request.details.get(
        "agent_authorization"
    ):
        raise Unprocessable(
            "The agent's authority is not recorded: verify manually with a note of it",
            loc=["body", "method"],
        )
    await _on_verified(session, principal, request, "code", None, ctx)


async def _on_verified(
    session: AsyncSession,
    principal: Principal,
    request: SubjectRequest,
    method: str,
    note: str | None,
    ctx: RequestContext,
) -> None:
    now = utcnow()
    request.status = state.request_next(request.status, state.RequestEvent.verified)
    request.verified_at = now
    request.verification_method = method
    request.verification_note = note
    request.verification_code_hash = None
    clock = clocks.clock_for(request.regime, ctx.clocks)
    if clock.pauses_for_verification and method != "trusted_session":
        # UK GDPR Art. 12A: the clock stood still while identity proof was awaited.
        request.due_at = clocks.paused_due(request.due_at, request.received_at, now)
    audit(
        session,
        principal,
        "request.verified",
        "request",
        request.id,
        {"method": method},
        subject_request_id=request.id,
    )
    await _open_scopes(session, principal, request, ctx)


# Scopes ----------------------------------------------------------------------------------


async def _request_digests(session: AsyncSession, request: SubjectRequest) -> list[BlindIndex]:
    rows = await session.execute(
        select(RequestIdentity.identity_type, RequestIdentity.key_id, RequestIdentity.digest).where(
            RequestIdentity.request_id == request.id
        )
    )
    return [BlindIndex(IdentityType(t), k, d) for t, k, d in rows]


async def _platform_id(session: AsyncSession) -> uuid.UUID:
    platform = await session.scalar(select(Controller.id).where(Controller.kind == "platform"))
    if platform is None:
        raise Conflict("No platform controller: run `spix-dsr seed` first")
    return platform


async def _open_scopes(
    session: AsyncSession, principal: Principal, request: SubjectRequest, ctx: RequestContext
) -> None:
    """Find the subject's records through the blind index and split them by controller."""
    digests = await _request_digests(session, request)
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
        await _suppress_for(session, principal, request, scope, digests)
        await _finish_scope(session, principal, request, scope)
        await _maybe_complete(session, principal, request, ctx)
        return
    statement = select(Record.id, Record.controller_id).where(
        Record.id.in_(
            select(RecordIdentity.record_id).where(
                RecordIdentity.digest.in_([d.digest for d in digests])
            )
        ),
        Record.state != "erased",
    )
    if request.filed_by_controller_id is not None:
        statement = statement.where(Record.controller_id == request.filed_by_controller_id)
    by_controller: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for record_id, controller_id in await session.execute(statement.order_by(Record.id)):
        by_controller[controller_id].append(record_id)
    if request.type == "objection" and request.filed_by_controller_id is None:
        # An objection to Spix's own processing reaches Spix even where no record is held.
        by_controller.setdefault(await _platform_id(session), [])
    controllers = {
        row.id: row
        for row in await session.execute(
            select(Controller.id, Controller.kind, Controller.auto_execute).where(
                Controller.id.in_(list(by_controller))
            )
        )
    }
    # An objection to processing other than direct marketing is weighed by a person (Art. 21(1)).
    weighed = request.type == "objection" and not await session.scalar(
        select(Purpose.objection_absolute).where(Purpose.key == request.details.get("purpose"))
    )
    for controller_id, record_ids in by_controller.items():
        controller = controllers[controller_id]
        runs_now = not weighed and (
            controller.kind == "platform"
            or controller.auto_execute
            or request.filed_by_controller_id == controller_id
        )
        scope = RequestScope(
            id=new_id(),
            request_id=request.id,
            controller_id=controller_id,
            status=state.ScopeStatus.in_progress
            if runs_now
            else state.ScopeStatus.awaiting_controller,
        )
        session.add(scope)
        await session.flush()
        if record_ids:
            await session.execute(
                insert(ScopeRecord),
                [{"scope_id": scope.id, "record_id": rid} for rid in record_ids],
            )
        if runs_now:
            await _start_scope(session, principal, request, scope, ctx)
        else:
            # The customer decides (GDPR Art. 28(3)(e)); its dashboard queue lists the scope.
            audit(
                session,
                principal,
                "request_scope.forwarded",
                "request_scope",
                scope.id,
                {"controller_id": str(controller_id), "records": len(record_ids)},
                subject_request_id=request.id,
            )
            outbox.emit(
                session,
                "scope.awaiting_controller",
                scope_ids(request, scope),
                controller=controller_id,
            )
    await _maybe_complete(session, principal, request, ctx)


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
    for system, rows in sorted(by_system.items()):
        task_id = new_id()
        session.add(
            Task(
                id=task_id,
                request_id=request.id,
                scope_id=scope.id,
                system=system,
                action=action,
                status="pending",
                record_ids=[str(r.id) for r in rows],
                record_refs=[r.record_ref for r in rows],
                details=details or {},
            )
        )
        session.add_all(TaskRecord(task_id=task_id, record_id=r.id) for r in rows)
        outbox.emit(
            session, "task.created", scope_ids(request, scope, task_id=task_id), system=system
        )
    return len(by_system)


async def _start_scope(
    session: AsyncSession,
    principal: Principal,
    request: SubjectRequest,
    scope: RequestScope,
    ctx: RequestContext,
) -> None:
    """Create the work the request's type asks of this scope's records."""
    from app.retention.service import erasure_split

    records = await _scope_records(session, scope)
    created = 0
    if request.type in ("access", "portability"):
        created = _add_tasks(session, request, scope, "export", records)
    elif request.type == "erasure":
        split = await erasure_split(session, [r.id for r in records])
        erasable = set(split.erasable)
        created = _add_tasks(
            session, request, scope, "erase", [r for r in records if r.id in erasable]
        )
        scope.outcome = {"erasable": len(erasable), "withheld": split.withheld}
    elif request.type == "rectification":
        created = _add_tasks(
            session,
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
        created = _add_tasks(session, request, scope, "unrestrict" if lift else "restrict", targets)
        scope.outcome = {"restricted" if not lift else "unrestricted": len(targets)}
    elif request.type == "objection":
        await _suppress_for(
            session, principal, request, scope, await _request_digests(session, request)
        )
    await session.flush()
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
    if created == 0:
        await _finish_scope(session, principal, request, scope)


async def _suppress_for(
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
    scope.outcome = {"suppressions": len(made), "channel": channel, "purpose": purpose}


async def _finish_scope(
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


def _close(request: SubjectRequest, now: datetime, ctx: RequestContext) -> None:
    request.closed_at = now
    request.purge_contact_after = now + ctx.proof_period


async def _maybe_complete(
    session: AsyncSession, principal: Principal, request: SubjectRequest, ctx: RequestContext
) -> None:
    if request.status != state.RequestStatus.in_progress:
        return
    scopes = (
        await session.scalars(select(RequestScope).where(RequestScope.request_id == request.id))
    ).all()
    if not state.request_can_complete(s.status for s in scopes):
        return
    request.status = state.request_next(request.status, state.RequestEvent.scopes_done)
    _close(request, utcnow(), ctx)
    request.outcome = await _summarise(session, request, list(scopes))
    await session.flush()
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


# Decisions and lifecycle ----------------------------------------------------------------


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
    await session.flush()
    audit(
        session,
        principal,
        f"request_scope.{body.decision}",
        "request_scope",
        scope.id,
        {"controller_id": str(controller_id)},
        subject_request_id=request.id,
    )
    if body.decision == "approve":
        await _start_scope(session, principal, request, scope, ctx)
    await _maybe_complete(session, principal, request, ctx)


def require_filer(principal: Principal, request: SubjectRequest) -> None:
    """Lifecycle calls belong to the privacy team, or the controller that filed the request."""
    if principal.role == "controller" and request.filed_by_controller_id != principal.controller_id:
        raise Forbidden("Only the privacy team or the filing controller may do this")


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
    _close(request, now, ctx)
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


# Tasks call back -------------------------------------------------------------------------


async def on_task_done(
    session: AsyncSession, principal: Principal, task: Task, ctx: RequestContext
) -> None:
    """A task completed or failed for good: move its scope, and maybe the request."""
    scope = await session.get(RequestScope, task.scope_id)
    request = await session.get(SubjectRequest, task.request_id)
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
    if open_tasks == 0 and scope.status == state.ScopeStatus.in_progress:
        await _finish_scope(session, principal, request, scope)
        await _maybe_complete(session, principal, request, ctx)


async def on_task_retried(session: AsyncSession, principal: Principal, task: Task) -> None:
    scope = await session.get(RequestScope, task.scope_id)
    assert scope is not None
    if scope.status == state.ScopeStatus.failed:
        scope.status = state.scope_next(scope.status, state.ScopeEvent.retried)
        await session.flush()


def open_corrections(details: dict[str, Any], box: SecretBox) -> dict[str, Any]:
    """The task details a system sees: corrections opened, the sealed text left out."""
    shown = {k: v for k, v in details.items() if k != "corrections_sealed"}
    if details.get("corrections_sealed"):
        shown["corrections"] = orjson.loads(
            box.open(details["corrections_sealed"], context="corrections")
        )
    return shown


async def open_and_overdue(session: AsyncSession) -> dict[str, tuple[int, int]]:
    """Open and overdue requests per regime, for the metrics gauges."""
    now = utcnow()
    overdue = func.sum(
        case(
            (func.coalesce(SubjectRequest.extended_due_at, SubjectRequest.due_at) < now, 1), else_=0
        )
    )
    rows = await session.execute(
        select(SubjectRequest.regime, func.count(), overdue)
        .where(SubjectRequest.status.in_([str(s) for s in OPEN]))
        .group_by(SubjectRequest.regime)
    )
    return {regime: (int(total), int(late or 0)) for regime, total, late in rows}
