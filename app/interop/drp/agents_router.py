"""`/v1/drp-agents`: the privacy team registers the Data Rights Protocol agents it accepts,
with the Ed25519 verify key each signs with."""

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from app.auth.dependencies import AdminKey, ReaderKey
from app.core.errors import error_responses
from app.core.etag import IfMatch, check_if_match, etag_of
from app.core.idempotency import IdempotencyDep
from app.core.pagination import Page, PageParams, page_params, paginate
from app.core.session import SessionDep
from app.interop.drp import agents
from app.interop.drp.models import DrpAgent
from app.interop.drp.schemas import DrpAgentCreate, DrpAgentOut, DrpAgentUpdate

router = APIRouter(prefix="/v1/drp-agents", tags=["Data Rights Protocol"])


@router.post(
    "",
    status_code=201,
    response_model=DrpAgentOut,
    operation_id="create_drp_agent",
    summary="Register a DRP authorized agent and its verify key",
    responses=error_responses(400, 401, 403, 409, 413, 422),
)
async def create_drp_agent(
    body: DrpAgentCreate, session: SessionDep, principal: AdminKey, idem: IdempotencyDep
) -> Response:
    agent = await agents.create_agent(session, principal, body)
    return await idem.respond(
        DrpAgentOut.model_validate(agent),
        201,
        headers={"ETag": etag_of(agent.version), "Location": f"/v1/drp-agents/{agent.agent_id}"},
    )


@router.get(
    "",
    operation_id="list_drp_agents",
    summary="List DRP agents",
    responses=error_responses(400, 401, 403, 422),
)
async def list_drp_agents(
    session: SessionDep, principal: ReaderKey, page: Annotated[PageParams, Depends(page_params)]
) -> Page[DrpAgentOut]:
    rows, next_cursor = await paginate(
        session, agents.select_agents(), DrpAgent.agent_id, page, str
    )
    return Page[DrpAgentOut](
        items=[DrpAgentOut.model_validate(row) for row in rows], next_cursor=next_cursor
    )


@router.get(
    "/{agent_id}",
    operation_id="get_drp_agent",
    summary="Read a DRP agent",
    responses=error_responses(401, 403, 404),
)
async def get_drp_agent(
    agent_id: str, session: SessionDep, principal: ReaderKey, response: Response
) -> DrpAgentOut:
    agent = await agents.get_agent(session, agent_id)
    response.headers["ETag"] = etag_of(agent.version)
    return DrpAgentOut.model_validate(agent)


@router.patch(
    "/{agent_id}",
    operation_id="update_drp_agent",
    summary="Change an agent's name, key, callbacks or status (a new key withdraws its token)",
    responses=error_responses(400, 401, 403, 404, 412, 413, 422),
)
async def update_drp_agent(
    agent_id: str,
    body: DrpAgentUpdate,
    session: SessionDep,
    principal: AdminKey,
    response: Response,
    if_match: IfMatch = None,
) -> DrpAgentOut:
    agent = await agents.get_agent(session, agent_id)
    check_if_match(if_match, agent.version)
    await agents.update_agent(session, principal, agent, body)
    response.headers["ETag"] = etag_of(agent.version)
    return DrpAgentOut.model_validate(agent)
