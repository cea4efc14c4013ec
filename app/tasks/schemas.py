import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from app.core.schemas import InputModel, OutputModel, Text

TaskAction = Literal["export", "erase", "rectify", "restrict", "unrestrict"]
TaskStatus = Literal["pending", "claimed", "completed", "failed", "suspended"]


class ClaimIn(InputModel):
    limit: int = Field(10, ge=1, le=100)
    lease_seconds: int = Field(300, ge=10, le=86_400)


class ClaimedTask(OutputModel):
    id: uuid.UUID
    request_id: uuid.UUID
    action: TaskAction
    record_refs: list[str]
    details: dict[str, Any]
    lease_expires_at: datetime


class ClaimOut(OutputModel):
    tasks: list[ClaimedTask]


class CompleteIn(InputModel):
    result: dict[str, Any] = Field(
        default_factory=dict,
        description='Export tasks: `{"data": {...}}`, the records\' data for the package',
    )


class FailIn(InputModel):
    error: Text = Field(description="What went wrong, without personal data")
    retryable: bool = False


class TaskOut(OutputModel):
    id: uuid.UUID
    request_id: uuid.UUID
    system: str
    action: TaskAction
    status: TaskStatus
    record_refs: list[str]
    attempts: int
    lease_expires_at: datetime | None
    error: str | None
    retryable: bool | None
    created_at: datetime
    completed_at: datetime | None


class TaskPage(OutputModel):
    items: list[TaskOut]
    next_cursor: str | None = None
