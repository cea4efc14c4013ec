"""Exercise, status and revoke (sections 2.01, 2.02, 2.04): each message is verified as section
3.07 orders, then handed to the requests services. What a right means, how it is verified,
its deadline and its work are theirs; this module only translates.

Choices:
- `access`, `access:categories` and `access:specific` file an access request (our package
  holds the categories and the specific data alike); `deletion` an erasure; `sale:opt-out` an
  opt-out of sale (under `ccpa` also of sharing, which the opt-out service adds).
- `sale:opt-in` is refused as `claim_not_covered`: an opt-in to sale must be asked for and then
  separately confirmed by the consumer (11 CCR 7028), which an agent's message cannot carry.
- `voluntary` is our regime `other`, whose clock the settings define.
- The agent's `email_verified` / `phone_number_verified` attest identity under the DRP system
  rules: with one of them true the request is filed as verified by the agent; without, it
  waits (`open`) for the privacy team to verify it.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record
from app.core.db import utcnow
from app.core.errors import AppError
from app.interop.drp.agents import agent_for_token, agent_principal
from app.interop.drp.messages import DrpError, Exercise, check_envelope, open_signed, parse_exercise
from app.interop.drp.messages import decode_verify_key as _key
from app.interop.drp.models import DrpAgent, DrpRequest
from app.interop.drp.status import status_object
from app.requests import intake, lifecycle, state
from app.requests.context import RequestContext
from app.requests.models import SubjectRequest
from app.requests.schemas import RequestCreate, RequestDetails, Requester
from app.suppressions.gpc import SALE
from app.webhooks.targets import UnsafeTarget, check_shape

REQUEST_TYPE = {
    "access": "access",
    "access:categories": "access",
    "access:specific": "access",
    "deletion": "erasure",
    "sale:opt-out": "opt_out",
}
REGIME = {"ccpa": "ccpa", "voluntary": "other"}
REFUSED = {"sale:opt-in": "claim_not_covered"}


@dataclass(frozen=True, slots=True)
class Gate:
    """What every agent call is checked against."""

    business_id: str | None
    skew: timedelta
    allow_private: bool = False


async def _signed_by_agent(
    session: AsyncSession, authorization: str | None, body: bytes, gate: Gate, *, envelope: str
) -> tuple[DrpAgent, dict[str, object]]:
    """The token's agent, and the message it signed, checked for audience and freshness.
    `envelope="optional"` (revoke, whose body the protocol shows as `reason` alone) checks the
    envelope only when the agent sent one."""
    agent = await agent_for_token(session, authorization)
    if gate.business_id is None:
        raise DrpError(403, "This business takes no DRP requests")
    claims = open_signed(body, _key(agent.verify_key))
    names = ("agent-id", "business-id", "issued-at", "expires-at")
    if envelope == "required" or any(name in claims for name in names):
        check_envelope(
            claims,
            agent_id=agent.agent_id,
            business_id=gate.business_id,
            now=utcnow(),
            skew=gate.skew,
        )
    return agent, claims


async def exercise(
    session: AsyncSession,
    authorization: str | None,
    body: bytes,
    gate: Gate,
    ctx: RequestContext,
) -> dict[str, object]:
    agent, claims = await _signed_by_agent(session, authorization, body, gate, envelope="required")
    wanted = parse_exercise(claims)
    if wanted.status_callback is not None:
        try:
            check_shape(wanted.status_callback, allow_private=gate.allow_private)
        except UnsafeTarget as exc:
            raise DrpError(400, f"`status_callback`: {exc}") from None
    digest = hashlib.sha256(b"".join(body.split())).hexdigest()
    replayed = await session.scalar(select(DrpRequest).where(DrpRequest.message_digest == digest))
    if replayed is not None:
        # The same signed message again (a retry): the request it filed, not a second one.
        if replayed.agent_pk != agent.id:
            raise DrpError(403, "This message was filed by another agent")
        return await _status_of(session, replayed)
    actor = agent_principal(agent)
    drp = DrpRequest(
        id=uuid.uuid4(),
        agent_pk=agent.id,
        agent_request_id=wanted.agent_request_id,
        exercise=wanted.action,
        regime=wanted.regime,
        status_callback=wanted.status_callback if agent.callback_allowed else None,
        message_digest=digest,
        received_at=utcnow(),
    )
    request: SubjectRequest | None = None
    if wanted.action in REFUSED:
        drp.refused_reason = REFUSED[wanted.action]
    else:
        try:
            request, _challenge = await intake.file_request(
                session, actor, _request_body(agent, wanted), ctx
            )
        except AppError as exc:
            # Refused by intake (an identity that does not normalise, a registry not seeded):
            # answered in the protocol's shape, a bad claim as the 400 the protocol uses.
            raise DrpError(400 if exc.status == 422 else exc.status, exc.detail) from None
        drp.id = request.id
        drp.subject_request_id = request.id
    try:
        async with session.begin_nested():
            session.add(drp)
    except IntegrityError:
        raise DrpError(409, "This message is being filed already; read its status") from None
    record(
        session,
        actor,
        "drp.exercised",
        "drp_request",
        drp.id,
        {
            "agent_id": agent.agent_id,
            "exercise": wanted.action,
            "regime": wanted.regime,
            "refused": drp.refused_reason,
        },
        subject_request_id=drp.subject_request_id,
    )
    return status_object(drp, request)


def _request_body(agent: DrpAgent, wanted: Exercise) -> RequestCreate:
    request_type = REQUEST_TYPE[wanted.action]
    return RequestCreate(
        type=request_type,  # type: ignore[arg-type]
        regime=REGIME[wanted.regime],  # type: ignore[arg-type]
        identities=wanted.identities,
        requester=Requester(
            kind="authorized_agent",
            name=agent.name,
            # CCPA 11 CCR 7063: the agent holds the consumer's signed permission; under the
            # DRP system rules its signed message attests it.
            authorization_note=f"DRP agent {agent.agent_id}: the consumer's permission is "
            "attested by the agent's signed message under the DRP system rules",
        ),
        channel="api",
        details=RequestDetails(purpose=SALE if request_type == "opt_out" else None),
        verified=wanted.verified,
    )


async def _owned(session: AsyncSession, agent: DrpAgent, request_id: str) -> DrpRequest:
    """The agent's DRP request: 404 when none has this id, 403 when another agent's."""
    try:
        key = uuid.UUID(request_id)
    except ValueError:
        raise DrpError(404, "No data rights request with this id") from None
    drp = await session.get(DrpRequest, key)
    if drp is None:
        raise DrpError(404, "No data rights request with this id")
    if drp.agent_pk != agent.id:
        raise DrpError(403, "This request is managed by another agent")
    return drp


async def _status_of(session: AsyncSession, drp: DrpRequest) -> dict[str, object]:
    request = (
        await session.get(SubjectRequest, drp.subject_request_id)
        if drp.subject_request_id is not None
        else None
    )
    return status_object(drp, request)


async def status(
    session: AsyncSession, authorization: str | None, request_id: str
) -> dict[str, object]:
    agent = await agent_for_token(session, authorization)
    return await _status_of(session, await _owned(session, agent, request_id))


async def revoke(
    session: AsyncSession,
    authorization: str | None,
    request_id: str,
    body: bytes,
    gate: Gate,
    ctx: RequestContext,
) -> dict[str, object]:
    agent, _claims = await _signed_by_agent(session, authorization, body, gate, envelope="optional")
    drp = await _owned(session, agent, request_id)
    request = (
        await session.get(SubjectRequest, drp.subject_request_id)
        if drp.subject_request_id is not None
        else None
    )
    if request is None or state.request_is_terminal(request.status):
        raise DrpError(400, "Only an open or in-progress request can be revoked")
    # The consumer's free-text reason is not kept: it may hold personal data.
    await lifecycle.close_early(
        session, agent_principal(agent), request, state.RequestEvent.cancelled, ctx
    )
    return status_object(drp, request)
