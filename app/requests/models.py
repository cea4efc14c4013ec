"""Subject requests, split into one scope per controller whose records they touch."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, Versioned
from app.core.ids import new_id

REQUEST_TYPES = (
    "access",
    "portability",
    "rectification",
    "erasure",
    "restriction",
    "objection",
    "opt_out",
)
REGIMES = ("gdpr", "uk_gdpr", "ccpa", "vcdpa", "cpa", "ctdpa", "lgpd", "other")


class SubjectRequest(Versioned, Base):
    __tablename__ = "subject_requests"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending_verification', 'in_progress', 'completed', 'denied', 'cancelled')",
            name="status",
        ),
        Index("ix_subject_requests_open_due", "status", "due_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    type: Mapped[str] = mapped_column(String(20))
    regime: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(30))
    channel: Mapped[str] = mapped_column(String(20))
    # Set when a controller key filed it: the request reaches that controller's records only.
    filed_by_controller_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("controllers.id"), index=True
    )
    filed_by_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    requester_kind: Mapped[str] = mapped_column(String(20))
    # Raw contact details and identities, sealed; dropped once closed and past the proof period.
    contact_sealed: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledge_by: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    extended_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    extension_reason: Mapped[str | None] = mapped_column(Text)
    # When the subject was told of the extension and its reasons (GDPR Art. 12(3)).
    extension_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When identity evidence was asked for, where the regime's clock stands still for it.
    clock_paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verification_method: Mapped[str | None] = mapped_column(String(20))
    verification_code_hash: Mapped[str | None] = mapped_column(String(64))
    verification_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verification_attempts: Mapped[int] = mapped_column(Integer, default=0)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verification_note: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    denial_reason: Mapped[str | None] = mapped_column(String(30))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the sealed contact details may be dropped (closed_at plus the proof period).
    purge_contact_after: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


class RequestIdentity(Base):
    """The subject's identities as blind indexes: how the request finds records."""

    __tablename__ = "request_identities"

    request_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("subject_requests.id", ondelete="CASCADE"), primary_key=True
    )
    identity_type: Mapped[str] = mapped_column(String(20), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(16))


class RequestScope(Base):
    """The part of a request that one controller's records make up."""

    __tablename__ = "request_scopes"
    __table_args__ = (
        UniqueConstraint("request_id", "controller_id"),
        CheckConstraint(
            "status IN ('awaiting_controller', 'in_progress', 'completed', 'declined', "
            "'handled_by_controller', 'failed')",
            name="status",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    request_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("subject_requests.id"), index=True
    )
    controller_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("controllers.id"), index=True)
    status: Mapped[str] = mapped_column(String(30))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # The customer's instruction an admin decision, or an automatic run, acted on.
    instruction_ref: Mapped[str | None] = mapped_column(String(500))
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ScopeRecord(Base):
    """The records a scope resolved to, when the request was verified."""

    __tablename__ = "request_scope_records"

    scope_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("request_scopes.id", ondelete="CASCADE"), primary_key=True
    )
    record_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("records.id"), primary_key=True, index=True
    )


class ErasureReceipt(Base):
    """What a completed erasure did, fixed when it completed (canonical JSON): signed when
    served, so later changes to the records (one registered again) never rewrite it."""

    __tablename__ = "erasure_receipts"

    request_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("subject_requests.id", ondelete="CASCADE"), primary_key=True
    )
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
