import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from app.audit.service import record as audit
from app.auth.dependencies import AnyKey, require_roles
from app.auth.service import Principal
from app.auth.visibility import CONTROLLER_FILTER
from app.core.errors import Unprocessable, error_responses
from app.core.identity import IndexerDep
from app.core.pagination import PageParams, page_params
from app.core.session import ReadSessionDep, SessionDep
from app.records import service
from app.records.models import Record
from app.records.schemas import (
    MAX_BATCH,
    BatchIn,
    BatchOut,
    ErasedIn,
    ErasedOut,
    RecordIn,
    RecordOut,
    RecordPage,
    RecordPatch,
    RetentionDecision,
)
from app.retention import grounds
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
    (outcome,) = await service.register(session, principal, indexer, [body])
    if outcome.problem is not None:
        raise outcome.problem.as_error()
    out = outcome.record()
    audit(session, principal, f"record.{outcome.status}", "record", out.id, {"system": body.system})
    return Response(
        out.model_dump_json().encode(),
        status_code=201 if outcome.status == "created" else 200,
        media_type="application/json",
        headers={"Location": f"/v1/records/{out.id}"},
    )


@router.post(
    "/batch",
    operation_id="register_records_batch",
    summary="Register up to 1000 records; each item succeeds or fails on its own",
    responses=error_responses(400, 401, 403, 413, 422),
)
async def register_records_batch(
    body: BatchIn, session: SessionDep, principal: WriterKey, indexer: IndexerDep
) -> BatchOut:
    outcomes = await service.register(session, principal, indexer, body.records)
    written = [o for o in outcomes if o.record_id is not None]
    if written:
        audit(
            session,
            principal,
            "records.registered",
            "record_batch",
            str(written[0].record_id),
            {
                "created": [str(o.record_id) for o in written if o.status == "created"],
                "updated": [str(o.record_id) for o in written if o.status == "updated"],
                "errors": len(outcomes) - len(written),
            },
        )
    return BatchOut(results=[o.result() for o in outcomes])


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
    statement = service.visible(principal)
    if system is not None:
        statement = statement.where(Record.system == system)
    if record_ref is not None:
        statement = statement.where(Record.record_ref == record_ref)
    if controller_id is not None:
        statement = statement.where(Record.controller_id == controller_id)
    if state is not None:
        statement = statement.where(Record.state == state)
    rows, next_cursor = await service.page_rows(session, statement, page.limit, page.cursor)
    return RecordPage(items=await service.records_out(session, rows), next_cursor=next_cursor)


@router.get(
    "/{record_id}",
    operation_id="get_record",
    summary="Read a record with its retention decision",
    responses=error_responses(401, 404, 422),
)
async def get_record(record_id: uuid.UUID, session: SessionDep, principal: AnyKey) -> RecordOut:
    row = await service.get_visible(session, principal, record_id)
    (out,) = await service.records_out(session, [row])
    return out


@router.get(
    "/{record_id}/retention",
    operation_id="get_record_retention",
    summary="May or must this record be deleted now, and why",
    responses=error_responses(401, 404, 422),
)
async def get_record_retention(
    record_id: uuid.UUID, session: ReadSessionDep, principal: AnyKey
) -> RetentionDecision:
    return await service.decision_of(session, principal, record_id)


@router.patch(
    "/{record_id}",
    operation_id="update_record",
    summary="Record activity, events, categories or purposes; retention is recomputed",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422),
)
async def update_record(
    record_id: uuid.UUID, body: RecordPatch, session: SessionDep, principal: WriterKey
) -> RecordOut:
    record, profile = await service.get_visible(session, principal, record_id)
    record, profile, changed = await service.update_record(session, record, profile, body)
    audit(session, principal, "record.updated", "record", record.id, {"fields": changed})
    # Its categories may have brought it under a hold, or out of one: its erase work follows.
    await sync_suspensions(session, principal, [record.id])
    (out,) = await service.records_out(session, [(record, profile)])
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
    service.require_writer(principal, body.system)
    if len(body.record_refs) > MAX_BATCH:
        raise Unprocessable(f"At most {MAX_BATCH} record_refs", loc=["body", "record_refs"])
    try:
        ids = await service.mark_erased(session, body.system, body.record_refs)
    except grounds.RecordsHeld as exc:
        # Answered, not raised: the refusal's audit event is committed (ids only).
        details = grounds.audit_details(exc.held)
        audit(
            session,
            principal,
            "records.erase_refused",
            "record_batch",
            details["records"][0],
            {"system": body.system, **details},
        )
        return grounds.problem(exc, request)
    if ids:
        audit(
            session,
            principal,
            "records.erased",
            "record_batch",
            ids[0],
            {"system": body.system, "records": [str(i) for i in ids]},
        )
    return ErasedOut(erased=len(ids))
