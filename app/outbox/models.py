import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, utcnow


class OutboxEvent(Base):
    """One event for one receiver, written in the transaction of the change that caused it, and
    its delivery state. Its id is the `webhook-id` of every attempt."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        CheckConstraint(
            "target_kind IN ('system', 'controller', 'drp_agent', 'opendsr_callback')",
            name="target_kind",
        ),
        CheckConstraint("status IN ('pending', 'delivered', 'dead')", name="status"),
        # What the relay claims: pending events whose attempt is due, oldest first.
        Index("ix_outbox_events_due", "status", "next_attempt_at"),
        Index("ix_outbox_events_target", "target_kind", "target_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    event_type: Mapped[str] = mapped_column(String(60), index=True)
    # Ids and statuses only: never an identity, a code or a secret.
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    target_kind: Mapped[str] = mapped_column(String(12))
    target_id: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A worker's claim: nobody else takes the event until claimed_until passes.
    claimed_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ScheduledNotice(Base):
    """What the worker's schedule has already announced, so running it twice (or on two
    workers) announces each thing once: a deadline at a given time, a lease that lapsed at a
    given time."""

    __tablename__ = "scheduled_notices"

    entity_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    kind: Mapped[str] = mapped_column(String(30), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
