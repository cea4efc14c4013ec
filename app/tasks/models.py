import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, utcnow
from app.core.ids import new_id


class Task(Base):
    """One unit of work for one system within one request scope."""

    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint(
            "action IN ('export', 'erase', 'rectify', 'restrict', 'unrestrict')", name="action"
        ),
        # suspended: an erase task whose records a legal hold or a restriction holds; it is
        # not handed out until nothing holds them (app/tasks/holds.py).
        CheckConstraint(
            "status IN ('pending', 'claimed', 'completed', 'failed', 'suspended')", name="status"
        ),
        # What a claim scans: a system's open tasks, oldest first.
        Index("ix_tasks_claimable", "system", "status", "lease_expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    request_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("subject_requests.id"), index=True
    )
    scope_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("request_scopes.id"), index=True)
    system: Mapped[str] = mapped_column(String(100), ForeignKey("systems.key"))
    action: Mapped[str] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(String(12), default="pending")
    record_ids: Mapped[list[str]] = mapped_column(JSON)
    record_refs: Mapped[list[str]] = mapped_column(JSON)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    retryable: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TaskRecord(Base):
    """Which records a task covers (the same ids as `Task.record_ids`), indexed by record so a
    hold or a restriction finds the erase work on its records in one statement."""

    __tablename__ = "task_records"

    task_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    record_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("records.id"), primary_key=True, index=True
    )
