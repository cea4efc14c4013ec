import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from app.auth.dependencies import AnyKey, require_roles
from app.auth.service import Principal
from app.auth.visibility import CONTROLLER_FILTER
from app.core.errors import error_responses
from app.core.fast_path import fast_path
from app.core.hot_read import ReadScope
from app.core.idempotency import IdempotencyDep
from app.core.identity import IndexerDep
from app.core.pagination import Page, PageParams, page_params, paginate
from app.core.schemas import DottedKey
from app.core.session import SessionDep
from app.suppressions import gpc, service
from app.suppressions.models import Suppression
from app.suppressions.schemas import (
    Channel,
    Source,
    SuppressionCheck,
    SuppressionCheckOut,
    SuppressionCreate,
    SuppressionOut,
)

router = APIRouter(prefix="/v1/suppressions", tags=["suppressions"])

# Opt-outs arrive where messages are sent: the messaging and marketing systems (an SMS STOP,
# an unsubscribe link), the privacy team, and customers for their own end users.
WriterKey = Annotated[Principal, require_roles("admin", "system", "controller")]
ListerKey = Annotated[Principal, require_roles("admin", "auditor", "controller")]


@router.post(
    "",
    status_code=201,
    response_model=SuppressionOut,
    operation_id="create_suppression",
    summary="Record an opt-out; answers the existing suppression (200) when already recorded",
    responses={
        200: {
            "description": "Already suppressed: the existing suppression",
            "model": SuppressionOut,
        },
        **error_responses(400, 401, 403, 409, 413, 422),
    },
)
async def create_suppression(
    body: SuppressionCreate,
    session: SessionDep,
    principal: WriterKey,
    idem: IdempotencyDep,
    indexer: IndexerDep,
    sec_gpc: Annotated[
        str | None,
        Header(
            alias="Sec-GPC",
            description="`1`: the Global Privacy Control signal. The call is then an opt-out "
            "of sale and sharing (CCPA 11 CCR 7025): both purposes, every channel, for the "
            "identity and the accounts it is known to belong to; the answer is the sale "
            "suppression",
        ),
    ] = None,
) -> Response:
    if sec_gpc is not None and sec_gpc.strip() == "1":
        result = await gpc.create_gpc_suppression(session, principal, indexer, body)
    else:
        result = await service.create_suppression(session, principal, indexer, body)
    return await idem.respond(result.suppression, 201 if result.created else 200)


@router.get(
    "",
    operation_id="list_suppressions",
    summary="List suppressions (a controller key: its own)",
    responses=error_responses(400, 401, 403, 422),
)
async def list_suppressions(
    session: SessionDep,
    principal: ListerKey,
    page: Annotated[PageParams, Depends(page_params)],
    controller_id: Annotated[
        uuid.UUID | None,
        Query(description="Only this controller's suppressions. " + CONTROLLER_FILTER),
    ] = None,
    channel: Annotated[Channel | None, Query()] = None,
    purpose: Annotated[DottedKey | None, Query()] = None,
    source: Annotated[Source | None, Query()] = None,
) -> Page[SuppressionOut]:
    statement = service.listed(
        principal, controller_id=controller_id, channel=channel, purpose=purpose, source=source
    )
    rows, next_cursor = await paginate(session, statement, Suppression.id, page)
    return Page[SuppressionOut](
        items=[SuppressionOut.model_validate(row) for row in rows], next_cursor=next_cursor
    )


@router.post(
    "/check",
    response_model=SuppressionCheckOut,
    operation_id="check_suppression",
    summary="Ask whether any of a subject's identities opted out of a channel",
    responses=error_responses(400, 401, 403, 413, 422),
)
@fast_path
async def check_suppression(
    request: Request, body: SuppressionCheck, principal: AnyKey
) -> Response:
    # Called before every marketing send: one dependency (the principal), its own read
    # session, and the answer serialised once (as the retention check does).
    async with ReadScope(request.app.state.db) as reads:
        answer = await service.check(reads, principal, request.app.state.indexer, body)
    return Response(answer.model_dump_json().encode(), media_type="application/json")
