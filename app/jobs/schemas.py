from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from app.core.schemas import OutputModel

if TYPE_CHECKING:
    from app.jobs.models import Job


class JobProgress(OutputModel):
    done: int = Field(description="Records processed so far")
    total: int | None = Field(description="Records the job reaches (known once it started)")


class JobCounts(OutputModel):
    records_changed: int = Field(description="Stored decisions that changed")


class JobOut(OutputModel):
    id: uuid.UUID
    kind: Literal["retention_recompute"]
    state: Literal["queued", "running", "completed", "failed"]
    subject_type: str | None = Field(examples=["retention_rule"])
    subject_id: str | None
    progress: JobProgress
    counts: JobCounts
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            id=job.id,
            kind=job.kind,  # type: ignore[arg-type]
            state=job.state,  # type: ignore[arg-type]
            subject_type=job.subject_type,
            subject_id=job.subject_id,
            progress=JobProgress(done=job.done, total=job.total),
            counts=JobCounts(records_changed=job.changed),
            error=job.error,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )
