import uuid

from fastapi import APIRouter

from app.auth.dependencies import AnyKey
from app.core.errors import NotFound, error_responses
from app.core.session import SessionDep
from app.jobs.models import Job
from app.jobs.schemas import JobOut

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get(
    "/{job_id}",
    operation_id="get_job",
    summary="A job: its state, progress, counts and error",
    responses=error_responses(401, 404, 422),
)
async def get_job(job_id: uuid.UUID, session: SessionDep, principal: AnyKey) -> JobOut:
    job = await session.get(Job, job_id)
    visible = principal.role in ("admin", "auditor") or (
        principal.role == "controller"
        and job is not None
        and job.controller_id == principal.controller_id
    )
    if job is None or not visible:
        raise NotFound("No such job")
    return JobOut.of(job)
