import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from app.audit.schemas import AuditEventOut
from app.auth.dependencies import require_roles
from app.auth.service import Principal
from app.auth.visibility import CONTROLLER_FILTER
from app.core.errors import Conflict, error_responses, problem_response
from app.core.fast_path import fast_path
from app.core.hot_read import ReadScope
from app.core.idempotency import IdempotencyDep
from app.core.pagination import Page, PageParams, page_params
from app.core.session import SessionDep
from app.core.signing import canonical
from app.requests import (
    intake,
    lifecycle,
    queries,
    reading,
    receipts,
    scopes,
    state,
    verification,
)
from app.requests.context import RequestContext, request_context
from app.requests.export import build_package
from app.requests.schemas import (
    AcknowledgeIn,
    CancelIn,
    DecisionIn,
    DenyIn,
    ExtendIn,
    RequestCreate,
    RequestCreated,
    RequestOut,
    RequestPage,
    RequestStatus,
    RequestType,
    ScopeStatus,
    SignedReceipt,
    VerifyIn,
)

router = APIRouter(prefix="/v1/requests", tags=["requests"])

Filer = Annotated[Principal, require_roles("admin", "controller")]
Reader = Annotated[Principal, require_roles("admin", "auditor", "controller")]


ContextDep = Annotated[RequestContext, Depends(request_context)]


async def _one(session: Any, principal: Principal, request_id: uuid.UUID) -> RequestOut:
    """The request as it stands after the change this request made (flushed first)."""
    await session.flush()
    return await reading.read_request(ReadScope.within(session), principal, request_id)


@router.post(
    "",
    status_code=201,
    response_model=RequestCreated,
    operation_id="file_request",
    summary="File a data subject request",
    responses=error_responses(400, 401, 403, 409, 413, 422),
)
@fast_path
async def file_request(
    body: RequestCreate,
    session: SessionDep,
    principal: Filer,
    idem: IdempotencyDep,
    ctx: ContextDep,
    sec_gpc: Annotated[
        str | None,
        Header(
            alias="Sec-GPC",
            description="`1`: the subject's browser sent the Global Privacy Control signal: "
            "an opt-out of sale and sharing for the identities and the accounts they are "
            "known to belong to, with no verification (CCPA 11 CCR 7025)",
        ),
    ] = None,
) -> Response:
    gpc = sec_gpc is not None and sec_gpc.strip() == "1"
    # What follows reads and answers; the session commits once this returns.
    filed = await intake.file(session, principal, body, ctx, gpc_signal=gpc, commit_next=True)
    out = await reading.filed_out(session, principal, filed)
    return await idem.respond(
        out,
        201,
        headers={"Location": f"/v1/requests/{filed.request.id}"},
    )


@router.get(
    "",
    operation_id="list_requests",
    summary="List requests; `overdue=true` lists those past their deadline, "
    "`acknowledgement_overdue=true` those whose receipt is not confirmed in time",
    responses=error_responses(400, 401, 403, 422),
)
async def list_requests(
    session: SessionDep,
    principal: Reader,
    page: Annotated[PageParams, Depends(page_params)],
    status: RequestStatus | None = None,
    type: RequestType | None = None,
    overdue: bool | None = None,
    acknowledgement_overdue: Annotated[
        bool | None,
        Query(
            description="`true`: open requests whose receipt was not confirmed by "
            "`acknowledge_by` (CCPA 11 CCR 7021(a))"
        ),
    ] = None,
    controller_id: Annotated[
        uuid.UUID | None,
        Query(description="Requests with a scope of this controller. " + CONTROLLER_FILTER),
    ] = None,
    scope_status: Annotated[
        ScopeStatus | None,
        Query(
            description="Requests with a scope in this status: `failed` for what needs "
            "someone's attention, `awaiting_controller` for a customer's queue"
        ),
    ] = None,
) -> RequestPage:
    return await queries.list_requests(
        session,
        principal,
        page,
        status=status,
        type=type,
        overdue=overdue,
        controller_id=controller_id,
        scope_status=scope_status,
        acknowledgement_overdue=acknowledgement_overdue,
    )


@router.get(
    "/{request_id}",
    operation_id="get_request",
    summary="Read a request with its scopes, tasks and outcome",
    response_model=RequestOut,
    responses=error_responses(401, 403, 404, 422),
)
@fast_path
async def get_request(request: Request, request_id: uuid.UUID, principal: Reader) -> Response:
    # A hot read: its own read session (one statement, no transaction), the answer
    # serialised once.
    async with ReadScope(request.app.state.db) as reads:
        out = await reading.read_request(reads, principal, request_id)
    return Response(out.model_dump_json().encode(), media_type="application/json")


@router.post(
    "/{request_id}/verify",
    response_model=RequestOut,
    operation_id="verify_request",
    summary="Verify the subject: the code they received, or a manual decision (admin)",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422),
)
async def verify_request(
    request_id: uuid.UUID,
    body: VerifyIn,
    session: SessionDep,
    principal: Filer,
    ctx: ContextDep,
    request: Request,
) -> Any:
    found = await queries.get_request(session, principal, request_id)
    try:
        await verification.verify(session, principal, found, body, ctx)
    except verification.VerificationFailed as exc:
        # Answered, not raised: the counted attempt (or the denial) must be committed.
        return problem_response(
            422,
            "verification-failed",
            "Verification failed",
            exc.detail,
            request=request,
            errors=[{"loc": ["body", "code"], "msg": exc.detail, "type": "value_error"}],
        )
    return await _one(session, principal, found.id)


@router.post(
    "/{request_id}/extend",
    operation_id="extend_request",
    summary="Extend the deadline once, by the regime's limit, with a reason and the date the "
    "subject was told; refused (409) once the original deadline has passed",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422),
)
async def extend_request(
    request_id: uuid.UUID, body: ExtendIn, session: SessionDep, principal: Filer, ctx: ContextDep
) -> RequestOut:
    found = await queries.get_request(session, principal, request_id)
    await lifecycle.extend(session, principal, found, body, ctx)
    return await _one(session, principal, request_id)


@router.post(
    "/{request_id}/acknowledge",
    operation_id="acknowledge_request",
    summary="Record that receipt was confirmed to the subject (CCPA: within 10 business days)",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422),
)
async def acknowledge_request(
    request_id: uuid.UUID,
    session: SessionDep,
    principal: Filer,
    body: AcknowledgeIn | None = None,
) -> RequestOut:
    found = await queries.get_request(session, principal, request_id)
    await lifecycle.acknowledge(
        session, principal, found, body.acknowledged_at if body is not None else None
    )
    return await _one(session, principal, request_id)


@router.post(
    "/{request_id}/cancel",
    operation_id="cancel_request",
    summary="Cancel an open request",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422),
)
async def cancel_request(
    request_id: uuid.UUID,
    session: SessionDep,
    principal: Filer,
    ctx: ContextDep,
    body: CancelIn | None = None,
) -> RequestOut:
    found = await queries.get_request(session, principal, request_id)
    await lifecycle.close_early(session, principal, found, state.RequestEvent.cancelled, ctx)
    return await _one(session, principal, request_id)


@router.post(
    "/{request_id}/deny",
    operation_id="deny_request",
    summary="Deny a request: unverifiable, manifestly unfounded, excessive or exempt",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422),
)
async def deny_request(
    request_id: uuid.UUID, body: DenyIn, session: SessionDep, principal: Filer, ctx: ContextDep
) -> RequestOut:
    found = await queries.get_request(session, principal, request_id)
    await lifecycle.close_early(session, principal, found, state.RequestEvent.denied, ctx, body)
    return await _one(session, principal, request_id)


@router.post(
    "/{request_id}/scopes/{controller_id}/decision",
    operation_id="decide_request_scope",
    summary="A controller's decision on its scope: approve, decline or handled by itself",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422),
)
async def decide_request_scope(
    request_id: uuid.UUID,
    controller_id: uuid.UUID,
    body: DecisionIn,
    session: SessionDep,
    principal: Filer,
    ctx: ContextDep,
) -> RequestOut:
    found = await queries.get_request(session, principal, request_id)
    await scopes.decide_scope(session, principal, found, controller_id, body, ctx)
    return await _one(session, principal, request_id)


@router.get(
    "/{request_id}/events",
    operation_id="list_request_events",
    summary="The request's audit trail",
    responses=error_responses(400, 401, 403, 404, 422),
)
async def list_request_events(
    request_id: uuid.UUID,
    session: SessionDep,
    principal: Reader,
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[AuditEventOut]:
    return await queries.request_events(session, principal, request_id, page)


@router.get(
    "/{request_id}/export",
    operation_id="get_request_export",
    summary="The machine-readable package of a completed access or portability request",
    responses=error_responses(401, 403, 404, 409, 422),
)
async def get_request_export(
    request_id: uuid.UUID, session: SessionDep, principal: Reader
) -> dict[str, Any]:
    found = await queries.get_request(session, principal, request_id)
    if found.type not in ("access", "portability"):
        raise Conflict("Only access and portability requests have a package")
    if found.status != "completed":
        raise Conflict(f"The request is {found.status}; the package comes when it completes")
    return await build_package(session, principal, found)


@router.get(
    "/{request_id}/receipt",
    operation_id="get_request_receipt",
    summary="The signed receipt of a completed erasure (verify it with the published key)",
    description=(
        "What the erasure did, per controller and system: the records erased and when (ids "
        "and refs), the records withheld and on which ground, and the tasks' results. Signed "
        "with Ed25519 over the canonical JSON of `receipt` (sorted keys, no whitespace); the "
        "key is `kid` in the set at `/.well-known/spix-dsr/receipt-keys`. A controller key "
        "gets its own part only. 404 for a request that is not an erasure; 409 until it "
        "completes."
    ),
    responses={
        200: {"model": SignedReceipt, "description": "The signed receipt"},
        **error_responses(401, 403, 404, 409, 422),
    },
)
async def get_request_receipt(
    request_id: uuid.UUID, session: SessionDep, principal: Reader, request: Request
) -> Response:
    signed = await receipts.signed_receipt(
        session, principal, request_id, request.app.state.receipt_signer
    )
    return Response(canonical(signed), media_type="application/json")
