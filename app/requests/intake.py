"""Intake: a request is filed, its identities blind-indexed and its deadlines set; a request
that needs no code is verified at once."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record as audit
from app.auth.service import Principal
from app.controllers.models import Controller
from app.core.crypto import SecretBox
from app.core.db import row_of, utcnow
from app.core.errors import Unprocessable
from app.core.identity import BlindIndex, BlindIndexer, InvalidIdentity
from app.core.ids import new_id
from app.purposes.models import Purpose
from app.requests import clocks, state
from app.requests.context import MARKETING, RequestContext
from app.requests.models import SubjectRequest
from app.requests.schemas import RequestCreate, VerificationChallenge
from app.requests.scopes import _platform_id, open_scopes
from app.requests.verification import mark_verified
from app.requests.writes import OpenedScope, WrittenRequest, write_request, write_request_row
from app.suppressions.gpc import SALE_OPT_OUT_REGIMES, opt_out_of_sale_and_sharing, require_purposes


@dataclass(frozen=True, slots=True)
class Filed:
    """A request just filed: its code when it waits for one, and the scopes it opened when
    it was verified at intake (what the answer shows, without reading it back)."""

    request: SubjectRequest | WrittenRequest
    challenge: VerificationChallenge | None
    identity_types: list[str]
    scopes: list[OpenedScope]


async def file_request(
    session: AsyncSession,
    principal: Principal,
    body: RequestCreate,
    ctx: RequestContext,
    *,
    gpc_signal: bool = False,
) -> tuple[SubjectRequest, VerificationChallenge | None]:
    filed = await file(session, principal, body, ctx, gpc_signal=gpc_signal)
    assert isinstance(filed.request, SubjectRequest)  # only a caller that commits next gets a row
    return filed.request, filed.challenge


async def file(
    session: AsyncSession,
    principal: Principal,
    body: RequestCreate,
    ctx: RequestContext,
    *,
    gpc_signal: bool = False,
    commit_next: bool = False,
) -> Filed:
    """File a request. `commit_next`: the caller commits next, catching no error on the way
    and changing nothing of the request (the filing's write may then wait for the commit, and
    a request that waits for its code is written from its row, answered as `WrittenRequest`)."""
    now = utcnow()
    filed_by = await _filing_controller(session, principal, body.controller_id)
    gpc = gpc_signal or body.details.gpc
    await _check_details(session, body, gpc)
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
    types = sorted({str(d.type) for d in digests})
    due = clocks.deadlines(body.regime, body.type, received_at, ctx.clocks, ctx.holidays)
    request_id = new_id()
    details = _stored_details(body, ctx.box)
    details["agent_authorization"] = body.requester.authorization_note is not None
    details["gpc"] = gpc
    values: dict[str, Any] = {
        "id": request_id,
        "type": body.type,
        "regime": body.regime,
        "status": state.RequestStatus.pending_verification,
        "channel": body.channel,
        "filed_by_controller_id": filed_by,
        "filed_by_key_id": principal.key_id,
        "requester_kind": body.requester.kind,
        "received_at": received_at,
        "acknowledge_by": due.acknowledge_by,
        "due_at": due.due_at,
        "details": details,
        "contact_sealed": ctx.box.seal(
            orjson.dumps(
                {
                    "name": body.requester.name,
                    "email": body.requester.email,
                    "identities": [i.model_dump(mode="json") for i in body.identities],
                }
            ).decode(),
            context=f"request:{request_id}",
        ),
    }
    audit(
        session,
        principal,
        "request.received",
        "request",
        request_id,
        {
            "type": body.type,
            "regime": body.regime,
            "channel": body.channel,
            "requester": body.requester.kind,
            "filed_by_controller_id": str(filed_by) if filed_by else None,
        },
        subject_request_id=request_id,
    )
    # An opt-out needs no verification (CCPA 11 CCR 7026); a trusted session has verified.
    verified_now = body.verified or body.type == "opt_out"
    if not gpc and not verified_now:
        # Written once, whole, with its code.
        challenge, code_values = _code(request_id, body.regime, ctx, now)
        values |= code_values
        if commit_next:
            row = row_of(SubjectRequest, values)
            await write_request_row(session, row, digests, commit_next=True)
            return Filed(WrittenRequest(**row), challenge, types, [])
        request = SubjectRequest(**values)
        await write_request(session, request, digests)
        return Filed(request, challenge, types, [])
    request = SubjectRequest(**values)
    written = False
    if gpc:
        await write_request(session, request, digests)  # the suppressions name the request
        written = True
        # The GPC signal opts the browser or device out of sale and sharing, and the accounts
        # it is known to belong to, at once and without verification (11 CCR 7025(c)).
        await opt_out_of_sale_and_sharing(
            session,
            digests=digests,
            controller_id=filed_by or await _platform_id(session),
            source="gpc",
            request_id=request.id,
            actor=principal,
            linked=True,
        )
    if verified_now:
        method = "trusted_session" if body.verified else "not_required"
        if not written:
            session.add(request)  # its status listeners look for its session
        mark_verified(session, principal, request, method, None, ctx)
        if not written:
            # Written once it is whole (write_request keeps it in the session as written):
            # a request verified at intake goes in verified.
            await write_request(session, request, digests)
        opened = await open_scopes(session, principal, request, ctx, digests)
        return Filed(request, None, types, opened)
    challenge, code_values = _code(request_id, body.regime, ctx, now)
    for name, value in code_values.items():
        setattr(request, name, value)
    await session.flush()
    return Filed(request, challenge, types, [])


def _code(
    request_id: uuid.UUID, regime: str, ctx: RequestContext, now: datetime
) -> tuple[VerificationChallenge, dict[str, Any]]:
    """A verification code for the request: what the filer is told, and what the request
    stores (the code's keyed hash, its expiry, the clock paused where the regime says)."""
    code = f"{secrets.randbelow(10**6):06d}"
    expires_at = now + ctx.code_ttl
    values: dict[str, Any] = {
        "verification_method": "code",
        "verification_code_hash": ctx.indexer.mac("verify", f"{request_id}:{code}"),
        "verification_expires_at": expires_at,
    }
    if clocks.clock_for(regime, ctx.clocks).pauses_for_verification:
        # UK GDPR Art. 12A: from this ask for identity evidence the clock stands still.
        values["clock_paused_at"] = now
    return VerificationChallenge(code=code, expires_at=expires_at), values


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


async def _check_details(session: AsyncSession, body: RequestCreate, gpc: bool) -> None:
    details = body.details
    if gpc or (body.type == "opt_out" and body.regime in SALE_OPT_OUT_REGIMES):
        await require_purposes(session)
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
