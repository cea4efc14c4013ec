import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from app.auth.dependencies import AdminKey, require_roles
from app.auth.service import Principal
from app.core.errors import error_responses
from app.core.pagination import PageParams, page_params
from app.core.session import SessionDep
from app.requests.router import ContextDep
from app.retention import grounds
from app.tasks import service
from app.tasks.schemas import ClaimIn, ClaimOut, CompleteIn, FailIn, TaskOut, TaskPage, TaskStatus

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])

SystemKey = Annotated[Principal, require_roles("system")]
TaskReader = Annotated[Principal, require_roles("admin", "auditor", "system")]


@router.post(
    "/claim",
    operation_id="claim_tasks",
    summary="Lease up to `limit` open tasks of this key's system",
    responses=error_responses(400, 401, 403, 413, 422),
)
async def claim_tasks(
    body: ClaimIn, session: SessionDep, principal: SystemKey, ctx: ContextDep
) -> ClaimOut:
    tasks = await service.claim(session, principal, body.limit, body.lease_seconds, ctx)
    return ClaimOut(tasks=tasks)


@router.post(
    "/{task_id}/complete",
    response_model=TaskOut,
    operation_id="complete_task",
    summary="Report a claimed task done (export tasks send the data)",
    description="An erase task whose records are held (legal hold or restriction) is not "
    "completed: 409 `record-held` with each held record's grounds in `held_records`, and "
    "the task is suspended until nothing holds them.",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422),
)
async def complete_task(
    task_id: uuid.UUID,
    session: SessionDep,
    principal: SystemKey,
    ctx: ContextDep,
    request: Request,
    body: CompleteIn | None = None,
) -> Any:
    task = await service.get_task(session, principal, task_id, records_first=True)
    try:
        await service.complete(session, principal, task, (body or CompleteIn()).result, ctx)
    except grounds.RecordsHeld as exc:
        # Answered, not raised: the suspension and the refusal's audit event are committed.
        return grounds.problem(exc, request)
    return TaskOut.model_validate(task)


@router.post(
    "/{task_id}/fail",
    operation_id="fail_task",
    summary="Report a claimed task failed; retryable failures return it to the queue",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422),
)
async def fail_task(
    task_id: uuid.UUID,
    body: FailIn,
    session: SessionDep,
    principal: SystemKey,
    ctx: ContextDep,
) -> TaskOut:
    task = await service.get_task(session, principal, task_id)
    await service.fail(session, principal, task, body.error, body.retryable, ctx)
    return TaskOut.model_validate(task)


@router.post(
    "/{task_id}/retry",
    operation_id="retry_task",
    summary="Send a failed task back to its system (the privacy team acted on the failure)",
    responses=error_responses(401, 403, 404, 409, 422),
)
async def retry_task(task_id: uuid.UUID, session: SessionDep, principal: AdminKey) -> TaskOut:
    task = await service.get_task(session, principal, task_id)
    await service.retry(session, principal, task)
    return TaskOut.model_validate(task)


@router.get(
    "",
    operation_id="list_tasks",
    summary="List tasks (a system key sees its own system's)",
    responses=error_responses(400, 401, 403, 422),
)
async def list_tasks(
    session: SessionDep,
    principal: TaskReader,
    page: Annotated[PageParams, Depends(page_params)],
    status: TaskStatus | None = None,
    request_id: uuid.UUID | None = None,
) -> TaskPage:
    return await service.list_tasks(session, principal, page, status=status, request_id=request_id)
