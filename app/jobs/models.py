import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, utcnow


class Job(Base):
    """Work too large for a request, done by workers in chunks that commit separately; the
    cursor and counts are committed with each chunk, so a job resumes where it stood."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint("kind IN ('retention_recompute')", name="kind"),
        CheckConstraint("state IN ('queued', 'running', 'completed', 'failed')", name="state"),
        Index("ix_jobs_state", "state", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    state: Mapped[str] = mapped_column(String(12), default="queued")
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    cursor: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # What started it (e.g. a retention rule) and whom `job.completed` goes to.
    subject_type: Mapped[str | None] = mapped_column(String(30))
    subject_id: Mapped[str | None] = mapped_column(String(100))
    controller_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    total: Mapped[int | None] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    # Chunks that raised (or whose worker's lease lapsed); at the setting's limit: `failed`.
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claimed_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
