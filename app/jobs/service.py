"""Durable jobs: a retention recompute that would reach more records than
SPIX_DSR_RECOMPUTE_INLINE_MAX_RECORDS is not done inside the request; a job is written in the
same transaction as the change (so it exists exactly when the change commits) and the request
answers 202 with it. Workers run it (app/jobs/runner.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import Principal
from app.core.config import get_settings
from app.core.ids import new_id
from app.jobs.models import Job
from app.jobs.schemas import JobOut
from app.records.models import Record
from app.retention.recompute import Scope, profiles_in

_DEFERRED = "deferred_job"


def scope_to_json(scope: Scope) -> dict[str, Any]:
    return {
        "controller_id": str(scope.controller_id) if scope.controller_id else None,
        "system": scope.system,
        "region": scope.region,
        "category": scope.category,
        "purpose": scope.purpose,
    }


def scope_from_json(data: dict[str, Any]) -> Scope:
    controller = data.get("controller_id")
    return Scope(
        controller_id=uuid.UUID(controller) if controller else None,
        system=data.get("system"),
        region=data.get("region"),
        category=data.get("category"),
        purpose=data.get("purpose"),
    )


async def _reach_exceeds(session: AsyncSession, scopes: list[Scope], limit: int) -> bool:
    """Whether the scopes reach more than `limit` records (counted no further than that)."""
    reached = 0
    for scope in scopes:
        inner = (
            select(Record.id)
            .where(Record.profile_id.in_(profiles_in(scope)))
            .limit(limit + 1 - reached)
            .subquery()
        )
        reached += await session.scalar(select(func.count()).select_from(inner)) or 0
        if reached > limit:
            return True
    return False


async def defer_recompute(session: AsyncSession, scopes: Iterable[Scope]) -> bool:
    """Queue a recompute job instead of recomputing now, when the change reaches more records
    than the setting allows; True when it did. Scopes naming identities or records (holds) are
    always recomputed at once: a hold must never be late."""
    scopes = list(scopes)
    if any(s.digests or s.record_ids for s in scopes):
        return False
    if not await _reach_exceeds(session, scopes, get_settings().recompute_inline_max_records):
        return False
    job = Job(
        id=new_id(),
        kind="retention_recompute",
        state="queued",
        params={"scopes": [scope_to_json(s) for s in scopes]},
        cursor={"scope": 0, "after": None},
        done=0,
        changed=0,
    )
    session.add(job)
    await session.flush()
    session.info[_DEFERRED] = job
    return True


async def deferred(
    session: AsyncSession, principal: Principal, subject_type: str, subject_id: Any
) -> JSONResponse | None:
    """The 202 answer when this request's change was deferred to a job, else None."""
    job: Job | None = session.info.pop(_DEFERRED, None)
    if job is None:
        return None
    job.subject_type = subject_type
    job.subject_id = str(subject_id)
    job.controller_id = principal.controller_id if principal.role == "controller" else None
    await session.flush()
    return JSONResponse(
        JobOut.of(job).model_dump(mode="json"),
        status_code=202,
        headers={"Location": f"/v1/jobs/{job.id}"},
    )


ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {
        "model": JobOut,
        "description": "The change is saved; stored decisions are recomputed by a job "
        "(follow `Location`)",
    }
}
