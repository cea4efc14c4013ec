"""What every stage of a request shares: the app's context, the open statuses, and
the request's identities as blind indexes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.crypto import SecretBox
from app.core.identity import BlindIndex, BlindIndexer, IdentityType
from app.requests import clocks, state
from app.requests.models import RequestIdentity, SubjectRequest

OPEN = (state.RequestStatus.pending_verification, state.RequestStatus.in_progress)
MARKETING = "marketing.communications"


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
    # How long a completed erasure's identities are remembered (blind indexes only).
    erasure_memory: timedelta = timedelta(days=365)


async def request_digests(session: AsyncSession, request: SubjectRequest) -> list[BlindIndex]:
    rows = await session.execute(
        select(RequestIdentity.identity_type, RequestIdentity.key_id, RequestIdentity.digest).where(
            RequestIdentity.request_id == request.id
        )
    )
    return [BlindIndex(IdentityType(t), k, d) for t, k, d in rows]


def app_context(app: Any) -> RequestContext:
    """The context of a running app (its state and settings): for every entry point that
    files or moves requests, the v1 router and the protocol adapters alike."""
    settings = app.state.settings
    return RequestContext(
        indexer=app.state.indexer,
        box=app.state.secret_box,
        clocks=app.state.clocks,
        holidays=frozenset(settings.holidays),
        code_ttl=timedelta(hours=settings.verification_code_ttl_hours),
        max_attempts=settings.verification_max_attempts,
        proof_period=timedelta(days=settings.request_proof_days),
        erasure_memory=timedelta(days=settings.erasure_memory_days),
    )


async def request_context(request: Request) -> RequestContext:
    """The context of the app serving this request (a FastAPI dependency; async, so FastAPI
    calls it in the event loop rather than in its thread pool)."""
    return app_context(request.app)
