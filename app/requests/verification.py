"""Verification: the subject's code (counted attempts, denial after too many) or a manual
decision; a verified request opens its scopes."""

from __future__ import annotations

import hmac
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record as audit
from app.auth.service import Principal
from app.core.db import utcnow
from app.core.errors import Conflict, Forbidden, Unprocessable
from app.requests import clocks, state
from app.requests.completion import mark_closed
from app.requests.context import RequestContext
from app.requests.models import SubjectRequest
from app.requests.notices import denial_outcome
from app.requests.schemas import VerifyIn
from app.requests.scopes import open_scopes


class VerificationFailed(Exception):
    """A wrong or expired code: answered 422, but the attempt it counts must be committed."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


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
        arrived = body.evidence_received_at
        if arrived is not None and arrived < request.received_at:
            raise Unprocessable(
                "The evidence cannot have arrived before the request",
                loc=["body", "evidence_received_at"],
            )
        mark_verified(session, principal, request, "manual", body.note, ctx, arrived)
        await open_scopes(session, principal, request, ctx)
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
            mark_closed(request, now, ctx)
            request.denial_reason = "unverifiable"
            request.outcome = denial_outcome(
                request.regime, "unverifiable", "too many wrong verification codes"
            )
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
    mark_verified(session, principal, request, "code", None, ctx)
    await open_scopes(session, principal, request, ctx)


def mark_verified(
    session: AsyncSession,
    principal: Principal,
    request: SubjectRequest,
    method: str,
    note: str | None,
    ctx: RequestContext,
    evidence_received_at: datetime | None = None,
) -> None:
    """The request is verified: its clock runs again where it stood still. Its scopes open
    next (open_scopes; intake writes a request verified at once in its first INSERT first)."""
    now = utcnow()
    request.status = state.request_next(request.status, state.RequestEvent.verified)
    request.verified_at = now
    request.verification_method = method
    request.verification_note = note
    request.verification_code_hash = None
    if request.clock_paused_at is not None:
        # UK GDPR Art. 12A: the clock stood still from when identity evidence was asked for,
        # and the period runs again, whole, from the day it arrived.
        request.due_at = max(
            request.due_at,
            clocks.resumed_due(
                request.regime,
                request.type,
                evidence_received_at or now,
                ctx.clocks,
                ctx.holidays,
            ),
        )
    audit(
        session,
        principal,
        "request.verified",
        "request",
        request.id,
        {"method": method},
        subject_request_id=request.id,
    )
