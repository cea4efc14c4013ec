"""Erasure work on a scope: which records go, which stay and on what ground (cited under the
request's regime), the subject's own restriction giving way to their erasure, and a person
called in where no exemption keeps a record (a contractual or policy minimum)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record as audit
from app.auth.service import Principal
from app.core.db import utcnow
from app.records.models import Record
from app.requests.models import RequestIdentity, RequestScope, ScopeRecord, SubjectRequest
from app.retention.recompute import Scope, recompute
from app.retention.service import ErasureSplit, erasure_split
from app.tasks.holds import sync_suspensions

# Scopes whose work ran: a restriction request's records were restricted by it.
_RAN = ("in_progress", "completed", "failed")


async def own_restrictions(
    session: AsyncSession, request: SubjectRequest, record_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Of these restricted records, the ones an earlier restriction request of the same
    subject (sharing an identity with this request) restricted."""
    if not record_ids:
        return set()
    ours = select(RequestIdentity.digest).where(RequestIdentity.request_id == request.id)
    rows = await session.execute(
        select(ScopeRecord.record_id, SubjectRequest.details)
        .join(RequestScope, RequestScope.id == ScopeRecord.scope_id)
        .join(SubjectRequest, SubjectRequest.id == RequestScope.request_id)
        .where(
            ScopeRecord.record_id.in_(record_ids),
            SubjectRequest.type == "restriction",
            SubjectRequest.id != request.id,
            SubjectRequest.created_at <= request.created_at,
            RequestScope.status.in_(_RAN),
            exists().where(
                RequestIdentity.request_id == SubjectRequest.id,
                RequestIdentity.digest.in_(ours),
            ),
        )
    )
    return {record_id for record_id, details in rows if not (details or {}).get("lift")}


async def split_for_erasure(
    session: AsyncSession,
    principal: Principal,
    request: SubjectRequest,
    scope: RequestScope,
    record_ids: Sequence[uuid.UUID],
) -> tuple[ErasureSplit, list[uuid.UUID]]:
    """The scope's records split for the erasure, and the ones whose restriction it lifted.

    A subject who restricted their records and later asks for their erasure wants them gone:
    the records only their own restriction keeps (no hold, no running minimum) are
    unrestricted, audited, and erased with the rest. A restriction kept for any other reason
    stays, and so does one someone else asked for."""
    split = await erasure_split(session, record_ids, regime=request.regime)
    lifted = sorted(await own_restrictions(session, request, split.only_restricted))
    if not lifted:
        return split, []
    await session.execute(
        update(Record)
        .where(Record.id.in_(lifted), Record.state == "restricted")
        .values(state="active", updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    await recompute(session, [Scope(record_ids=frozenset(lifted))])
    await sync_suspensions(session, principal, lifted)
    audit(
        session,
        principal,
        "request_scope.restriction_lifted",
        "request_scope",
        scope.id,
        {
            "controller_id": str(scope.controller_id),
            "records": [str(record_id) for record_id in lifted],
            "cause": "erasure_by_the_same_subject",
        },
        subject_request_id=request.id,
    )
    return await erasure_split(session, record_ids, regime=request.regime), lifted


def needs_person(scope: RequestScope) -> bool:
    """An erasure scope that kept records on no exemption stays open for a person."""
    return bool((scope.outcome or {}).get("needs_person"))
