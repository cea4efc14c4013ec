"""Authorized agents of the Data Rights Protocol, and the DRP requests they filed."""

import uuid
from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, Versioned, utcnow
from app.core.ids import new_id


class DrpAgent(Versioned, Base):
    """An agent registered by the privacy team: its DRP id and the Ed25519 key it signs with.
    Only a hash of the pair-wise bearer token is kept."""

    __tablename__ = "drp_agents"
    __table_args__ = (CheckConstraint("status IN ('active', 'suspended')", name="status"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    agent_id: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # The 32-byte Ed25519 verify key, base64 (as the DRP service directory publishes it).
    verify_key: Mapped[str] = mapped_column(String(64))
    callback_allowed: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(12), default="active")
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    token_issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DrpRequest(Base):
    """One exercise of a right by an agent. `id` is the DRP `request_id`: the subject
    request's id when the exercise was filed, its own when it was refused at the door (an
    opt-in we cannot honour)."""

    __tablename__ = "drp_requests"
    __table_args__ = (
        Index("ix_drp_requests_agent", "agent_pk", "agent_request_id"),
        CheckConstraint(
            "refused_reason IS NULL OR subject_request_id IS NULL", name="refused_unfiled"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    agent_pk: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("drp_agents.id"))
    subject_request_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("subject_requests.id"), unique=True
    )
    agent_request_id: Mapped[str | None] = mapped_column(String(200))
    exercise: Mapped[str] = mapped_column(String(30))
    regime: Mapped[str] = mapped_column(String(20))
    # Where status changes are POSTed; no personal data (an agent's endpoint).
    status_callback: Mapped[str | None] = mapped_column(Text)
    # SHA-256 of the signed message: a replayed message answers the request it filed.
    message_digest: Mapped[str] = mapped_column(String(64), unique=True)
    refused_reason: Mapped[str | None] = mapped_column(String(30))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
