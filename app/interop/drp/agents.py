"""The agent registry (the privacy team's side) and the pair-wise bearer tokens agents set up
with a signed message (section 2.05). A token is 32 random bytes; only its SHA-256 is kept."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record
from app.auth.service import Principal
from app.core.db import utcnow
from app.core.errors import Conflict, NotFound
from app.interop.drp.messages import DrpError, check_envelope, check_version, open_signed
from app.interop.drp.messages import decode_verify_key as _key
from app.interop.drp.models import DrpAgent
from app.interop.drp.schemas import DrpAgentCreate, DrpAgentUpdate

ROLE = "drp_agent"


def token_hash(token: str) -> str:
    # 256 random bits: a plain digest is as strong as a slow KDF here.
    return hashlib.sha256(token.encode()).hexdigest()


def agent_principal(agent: DrpAgent) -> Principal:
    """The agent as an actor of the audit log and the requests services; it sees nothing
    through the v1 API (an unknown role's visibility is empty)."""
    return Principal(key_id=agent.id, role=ROLE)


async def create_agent(
    session: AsyncSession, principal: Principal, body: DrpAgentCreate
) -> DrpAgent:
    agent = DrpAgent(**body.model_dump(), status="active")
    try:
        async with session.begin_nested():
            session.add(agent)
    except IntegrityError:
        raise Conflict(f"An agent with id {body.agent_id!r} is registered already") from None
    record(
        session,
        principal,
        "drp_agent.registered",
        "drp_agent",
        agent.id,
        {"agent_id": agent.agent_id},
    )
    return agent


async def get_agent(session: AsyncSession, agent_id: str) -> DrpAgent:
    agent = await session.scalar(select(DrpAgent).where(DrpAgent.agent_id == agent_id))
    if agent is None:
        raise NotFound("No DRP agent with this id")
    return agent


async def update_agent(
    session: AsyncSession, principal: Principal, agent: DrpAgent, body: DrpAgentUpdate
) -> None:
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    changed = sorted(f for f, value in changes.items() if getattr(agent, f) != value)
    for field in changed:
        setattr(agent, field, changes[field])
    if "verify_key" in changed:
        # A new key means a new root of trust: the token set up under the old one goes.
        agent.token_hash = None
        agent.token_issued_at = None
    await session.flush()
    record(session, principal, "drp_agent.updated", "drp_agent", agent.id, {"changed": changed})


async def set_up_token(
    session: AsyncSession, agent_id: str, body: bytes, business_id: str | None, skew: timedelta
) -> tuple[DrpAgent, str]:
    """Verify the signed setup message and issue the agent's pair-wise token (replacing any
    earlier one). Every refusal is a 403 without body, as section 2.05.1 asks."""
    agent = await session.scalar(select(DrpAgent).where(DrpAgent.agent_id == agent_id))
    if agent is None or agent.status != "active" or business_id is None:
        raise DrpError(403, "Unknown or suspended agent")
    claims = open_signed(body, _key(agent.verify_key))
    check_envelope(
        claims, agent_id=agent.agent_id, business_id=business_id, now=utcnow(), skew=skew
    )
    check_version(claims)
    token = secrets.token_urlsafe(32)
    agent.token_hash = token_hash(token)
    agent.token_issued_at = utcnow()
    await session.flush()
    record(session, agent_principal(agent), "drp_agent.token_issued", "drp_agent", agent.id, {})
    return agent, token


async def agent_for_token(session: AsyncSession, authorization: str | None) -> DrpAgent:
    """The active agent whose pair-wise token this `Authorization` header carries; 403
    otherwise (the protocol names no 401)."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise DrpError(403, "Send `Authorization: Bearer <token>` from the pair-wise key setup")
    agent = await session.scalar(select(DrpAgent).where(DrpAgent.token_hash == token_hash(token)))
    if agent is None or agent.status != "active":
        raise DrpError(403, "Unknown, replaced or suspended token")
    return agent


async def check_agent_token(
    session: AsyncSession, authorization: str | None, agent_id: str
) -> None:
    """Agent information (section 2.06): 403 unless the token is this agent's."""
    agent = await agent_for_token(session, authorization)
    if agent.agent_id != agent_id:
        raise DrpError(403, "The token is not this agent's")


def select_agents() -> Select[tuple[DrpAgent]]:
    return select(DrpAgent)
