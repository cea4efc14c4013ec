import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from app.auth.dependencies import AnyKey, require_roles
from app.auth.service import Principal
from app.auth.visibility import CONTROLLER_FILTER
from app.core.errors import Unprocessable, error_responses
from app.core.fast_path import fast_path
from app.core.hot_read import ReadScope
from app.core.identity import IndexerDep
from app.core.pagination import PageParams, page_params
from app.core.schemas import MAX_BATCH
from app.core.session import SessionDep
from app.records import erasure, queries, register, update
from app.records.schemas import (
    BatchIn,
    BatchOut,
    ErasedIn,
    ErasedOut,
    RecordIn,
    RecordOut,
    RecordPage,
    RecordPatch,
)
from app.retention import answer, grounds
from app.retention.schemas import RetentionDecision
from app.tasks.holds import sync_suspensions

router = APIRouter(prefix="/v1/records", tags=["records"])

WriterKey = Annotated[Principal, require_roles("admin", "system")]


@router.post(
    "",
    status_code=201,
    response_model=RecordOut,
    operation_id="register_record",
    summary="Register a record, or update it when (system, record_ref) exists",
    responses={
        200: {"description": "The record existed and was updated", "model": RecordOut},
        **error_responses(400, 401, 403, 413, 422),
    },
)
async def register_record(
    body: RecordIn, session: SessionDep, principal: WriterKey, indexer: IndexerDep
) -> Response:
    outcome = await register.register_one(session, principal, indexer, body)
    out = outcome.record()
    return Response(
        out.model_dump_json().encode(),
        status_code=201 if outcome.status == "created" else 200,
        media_type="application/json",
        headers={"Location": f"/v1/records/{out.id}"},
    )


@router.post(
    "/batch",
    response_model=BatchOut,
    operation_id="register_records_batch",
    summary="Register up to 1000 records; each item succeeds or fails on its own",
    responses=error_responses(400, 401, 403, 413, 422),
)
async def register_records_batch(
    body: BatchIn, session: SessionDep, principal: WriterKey, indexer: IndexerDep
) -> Response:
    outcomes = await register.register_batch(session, principal, indexer, body.records)
    # Serialised once: a thousand results built as models, then validated again against
    # the response model, cost more than the rest of the answer.
    return Response(register.batch_json(outcomes), media_type="application/json")


@router.get(
    "",
    operation_id="list_records",
    summary="List records by system, record_ref or controller",
    responses=error_responses(400, 401, 422),
)
async def list_records(
    session: SessionDep,
    principal: AnyKey,
    page: Annotated[PageParams, Depends(page_params)],
    system: Annotated[str | None, Query(max_length=100)] = None,
    record_ref: Annotated[str | None, Query(max_length=500)] = None,
    controller_id: Annotated[
        uuid.UUID | None, Query(description="Only this controller's records. " + CONTROLLER_FILTER)
    ] = None,
    state: Annotated[str | None, Query(pattern="^(active|restricted|erased)$")] = None,
) -> RecordPage:
    return await queries.list_records(
        session,
        principal,
        page.limit,
        page.cursor,
        system=system,
        record_ref=record_ref,
        controller_id=controller_id,
        state=state,
    )


@router.get(
    "/{record_id}",
    operation_id="get_record",
    summary="Read a record with its retention decision",
    responses=error_responses(401, 404, 422),
)
async def get_record(record_id: uuid.UUID, session: SessionDep, principal: AnyKey) -> RecordOut:
    return await queries.get_record(session, principal, record_id)


@router.get(
    "/{record_id}/retention",
    operation_id="get_record_retention",
    summary="May or must this record be deleted now, and why",
    response_model=RetentionDecision,
    responses=error_responses(401, 404, 422),
)
@fast_path
async def get_record_retention(
    request: Request, record_id: uuid.UUID, principal: AnyKey
) -> Response:
    # The hot check: one dependency (the principal), its own read session, and the answer
    # serialised once (a returned model would be validated again against the same model).
    async with ReadScope(request.app.state.db) as reads:
        decision = await answer.decision_of(reads, principal, record_id)
    return Response(decision.model_dump_json().encode(), media_type="application/json")


@router.patch(
    "/{record_id}",
    operation_id="update_record",
    summary="Record activity, events, categories or purposes; retention is recomputed",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422),
)
async def update_record(
    record_id: uuid.UUID, body: RecordPatch, session: SessionDep, principal: WriterKey
) -> RecordOut:
    out = await update.update_record(session, principal, record_id, body)
    # Its categories may have brought it under a hold, or out of one: its erase work follows.
    # (Called here, not from records: the tasks service calls records, not the reverse.)
    await sync_suspensions(session, principal, [out.id])
    return out


@router.post(
    "/erased",
    response_model=ErasedOut,
    operation_id="mark_records_erased",
    summary="Report records deleted in their system; they become tombstones",
    description="Held records (legal hold or restriction) are never tombstoned: when any "
    "named record is held, none is, and the answer is 409 `record-held` listing each held "
    "one (`index` in `record_refs`, `record_id`, `record_ref`, `grounds`) in `held_records`.",
    responses=error_responses(400, 401, 403, 409, 413, 422),
)
async def mark_records_erased(
    body: ErasedIn, session: SessionDep, principal: WriterKey, request: Request
) -> Any:
    erasure.require_writer(principal, body.system)
    if len(body.record_refs) > MAX_BATCH:
        raise Unprocessable(f"At most {MAX_BATCH} record_refs", loc=["body", "record_refs"])
    try:
        ids = await erasure.mark_erased(session, principal, body.system, body.record_refs)
    except grounds.RecordsHeld as exc:
        # Answered, not raised: the refusal's audit event is committed.
        return grounds.problem(exc, request)
    return ErasedOut(erased=len(ids))
