"""What a completed erasure leaves behind: the memory of the erased identities (blind indexes
per controller, for a while) and a receipt of what was done, fixed at completion and signed
when served (Art. 5(2) accountability; Art. 17 and 19)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import Principal
from app.core.errors import Conflict, NotFound
from app.core.signing import Signer, canonical
from app.records.models import ErasureMemory, Record
from app.requests import queries, state
from app.requests.models import ErasureReceipt, RequestIdentity, RequestScope, SubjectRequest
from app.tasks.models import Task

RECEIPT_VERSION = 1


def _at(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def remember_erasure(
    session: AsyncSession,
    request: SubjectRequest,
    scopes: list[RequestScope],
    now: datetime,
    period: timedelta,
) -> None:
    """One statement: every hash of the request's identities, per controller whose scope
    Spix carried out, kept until `now + period`. Declined scopes erased nothing here."""
    done = [s.controller_id for s in scopes if s.status == state.ScopeStatus.completed]
    if not done or period <= timedelta(0):
        return
    rows = (
        select(
            RequestIdentity.request_id,
            RequestScope.controller_id,
            RequestIdentity.digest,
            literal(now, ErasureMemory.erased_at.type).label("erased_at"),
            literal(now + period, ErasureMemory.expires_at.type).label("expires_at"),
        )
        .select_from(RequestIdentity)
        .join(RequestScope, RequestScope.request_id == RequestIdentity.request_id)
        .where(
            RequestIdentity.request_id == request.id,
            RequestScope.status == state.ScopeStatus.completed,
        )
        .distinct()
    )
    await session.execute(
        ErasureMemory.__table__.insert().from_select(  # type: ignore[attr-defined]
            ["request_id", "controller_id", "digest", "erased_at", "expires_at"], rows
        )
    )


async def fix_receipt(
    session: AsyncSession, request: SubjectRequest, scopes: list[RequestScope], now: datetime
) -> None:
    """The receipt's content, per controller and system, stored as canonical JSON."""
    tasks = (
        await session.scalars(
            select(Task).where(Task.request_id == request.id).order_by(Task.system, Task.id)
        )
    ).all()
    erase_ids = {uuid.UUID(i) for t in tasks if t.action == "erase" for i in t.record_ids}
    erased = (
        await session.execute(
            select(Record.id, Record.controller_id, Record.system, Record.record_ref)
            .add_columns(Record.erased_at)
            .where(Record.id.in_(erase_ids), Record.state == "erased")
            .order_by(Record.system, Record.record_ref)
        )
    ).all()
    by_controller: dict[uuid.UUID, dict[str, dict[str, list[Any]]]] = defaultdict(
        lambda: defaultdict(lambda: {"erased": [], "withheld": [], "tasks": []})
    )
    for row in erased:
        by_controller[row.controller_id][row.system]["erased"].append(
            {"id": str(row.id), "record_ref": row.record_ref, "erased_at": _at(row.erased_at)}
        )
    scope_controller = {s.id: s.controller_id for s in scopes}
    for task in tasks:
        by_controller[scope_controller[task.scope_id]][task.system]["tasks"].append(
            {
                "id": str(task.id),
                "action": task.action,
                "status": task.status,
                "records": len(task.record_ids),
                "completed_at": _at(task.completed_at),
                "result": task.result if task.action == "erase" else None,
            }
        )
    for scope in scopes:
        for withheld in (scope.outcome or {}).get("withheld", []):
            by_controller[scope.controller_id][withheld["system"]]["withheld"].append(
                {
                    "id": withheld["record_id"],
                    "record_ref": withheld["record_ref"],
                    "status": withheld.get("status"),
                    "grounds": withheld.get("grounds", []),
                }
            )
    controllers = [
        {
            "controller_id": str(scope.controller_id),
            "status": scope.status,
            "reason": scope.decision_reason,
            "systems": [
                {"system": system, **parts}
                for system, parts in sorted(by_controller[scope.controller_id].items())
            ],
        }
        for scope in sorted(scopes, key=lambda s: str(s.controller_id))
    ]
    payload = {
        "version": RECEIPT_VERSION,
        "issuer": "spix-dsr",
        "request_id": str(request.id),
        "regime": request.regime,
        "type": request.type,
        "received_at": _at(request.received_at),
        "completed_at": _at(request.closed_at),
        "controllers": controllers,
    }
    session.add(
        ErasureReceipt(request_id=request.id, payload=canonical(payload).decode(), created_at=now)
    )


async def on_erasure_completed(
    session: AsyncSession,
    request: SubjectRequest,
    scopes: list[RequestScope],
    now: datetime,
    memory_period: timedelta,
) -> None:
    await remember_erasure(session, request, scopes, now, memory_period)
    await fix_receipt(session, request, scopes, now)


async def signed_receipt(
    session: AsyncSession, principal: Principal, request_id: uuid.UUID, signer: Signer
) -> dict[str, Any]:
    """The signed receipt as this key may read it: a controller key gets its own part only
    (signed as such). The same receipt and key give the same bytes every time."""
    request = await queries.get_request(session, principal, request_id)
    if request.type != "erasure":
        raise NotFound("Only an erasure request has a receipt")
    if request.status != state.RequestStatus.completed:
        raise Conflict(f"The request is {request.status}; the receipt comes when it completes")
    stored = await session.get(ErasureReceipt, request.id)
    if stored is None:
        raise NotFound("This erasure completed before receipts were kept: it has none")
    receipt = orjson.loads(stored.payload)
    own = principal.visibility.controller_id
    if principal.visibility.kind == "controller":
        receipt["controllers"] = [
            c for c in receipt["controllers"] if c["controller_id"] == str(own)
        ]
    return signer.sign(receipt)
