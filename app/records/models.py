"""The inventory: pointers to personal data held by Spix systems, never the data itself.

Records that share categories, purposes, controller, system and region share a profile, so
retention rules are resolved once per profile and rule changes find the records they touch
through a handful of profiles instead of scanning records."""

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ColumnElement,
    ForeignKey,
    Index,
    Select,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    select,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.auth.visibility import Visibility
from app.core.db import Base, UTCDateTime, utcnow
from app.core.ids import new_id

if TYPE_CHECKING:
    from app.auth.service import Principal


class RecordProfile(Base):
    __tablename__ = "record_profiles"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    # SHA-256 of the canonical (categories, purposes, controller, system, region).
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    controller_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("controllers.id"), index=True)
    system: Mapped[str] = mapped_column(String(100), ForeignKey("systems.key"), index=True)
    region: Mapped[str | None] = mapped_column(String(50))
    categories: Mapped[list[str]] = mapped_column(JSON)
    purposes: Mapped[list[str]] = mapped_column(JSON)
    # The retention rules that apply to these records, ranked, as JSON text
    # (engine.encode_ranked): written with the records' stored decisions, read by a check
    # to explain a decision from the record's own dates.
    ranked_rules: Mapped[str] = mapped_column(Text, default="[]", server_default="[]")


class RecordProfileCategory(Base):
    """Which categories a profile holds, indexed so a rule on a category prefix finds them."""

    __tablename__ = "record_profile_categories"

    profile_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("record_profiles.id", ondelete="CASCADE"), primary_key=True
    )
    category: Mapped[str] = mapped_column(
        String(200), ForeignKey("data_categories.key"), primary_key=True, index=True
    )


class RecordProfilePurpose(Base):
    __tablename__ = "record_profile_purposes"

    profile_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("record_profiles.id", ondelete="CASCADE"), primary_key=True
    )
    purpose: Mapped[str] = mapped_column(
        String(200), ForeignKey("purposes.key"), primary_key=True, index=True
    )


# The due sweep's partial index condition. Queries repeat it word for word: SQLite uses a
# partial index only when the query's WHERE visibly contains the index's condition.
DUE_PREDICATE = "state = 'active' AND NOT held AND delete_by IS NOT NULL"


class Record(Base):
    __tablename__ = "records"
    __table_args__ = (
        UniqueConstraint("system", "record_ref"),
        CheckConstraint("state IN ('active', 'restricted', 'erased')", name="state"),
        # A profile's records in id order: recompute walks them in keyset chunks.
        Index("ix_records_profile_id_id", "profile_id", "id"),
        # The due sweep: one range scan per system over deletable records by deadline.
        Index(
            "ix_records_due",
            "system",
            "delete_by",
            "id",
            sqlite_where=text(DUE_PREDICATE),
            postgresql_where=text(DUE_PREDICATE),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    system: Mapped[str] = mapped_column(String(100), ForeignKey("systems.key"))
    record_ref: Mapped[str] = mapped_column(String(500))
    # Copied from the profile so tenant filters need no join.
    controller_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("controllers.id"), index=True)
    profile_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("record_profiles.id"))
    collected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_activity_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    events: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(12), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The stored retention decision: the status follows from these and the clock.
    held: Mapped[bool] = mapped_column(Boolean, default=False)
    keep_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    keep_indefinitely: Mapped[bool] = mapped_column(Boolean, default=False)
    delete_by: Mapped[datetime | None] = mapped_column(UTCDateTime)
    action: Mapped[str] = mapped_column(String(10), default="delete")


class RecordIdentity(Base):
    """A record's subject identities, as blind indexes only; dropped when the record is erased."""

    __tablename__ = "record_identities"
    __table_args__ = (Index("ix_record_identities_digest", "digest", "record_id"),)

    record_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("records.id", ondelete="CASCADE"), primary_key=True
    )
    identity_type: Mapped[str] = mapped_column(String(20), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(16))


def record_rows(visibility: Visibility) -> ColumnElement[bool]:
    """Records a key sees: a system key its system's, a controller key its controller's."""
    return visibility.where(
        system=lambda key: Record.system == key,
        controller=lambda controller_id: Record.controller_id == controller_id,
    )


def visible(principal: "Principal") -> Select[Record, RecordProfile]:
    """The records a key sees, each with its profile."""
    return (
        select(Record, RecordProfile)
        .join(RecordProfile, RecordProfile.id == Record.profile_id)
        .where(record_rows(principal.visibility))
    )


class ErasureMemory(Base):
    """An erasure remembered for a while: the blind indexes of an erased subject's identities
    (every version the request's identities hash to) with the controller and the request,
    never a raw identity. A record registered for one of them before `expires_at` is flagged."""

    __tablename__ = "erasure_memory"
    __table_args__ = (
        Index("ix_erasure_memory_digest", "digest", "expires_at"),
        # The schedule's purge walks expired rows in order of expiry.
        Index("ix_erasure_memory_expires_at", "expires_at"),
    )

    request_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("subject_requests.id", ondelete="CASCADE"), primary_key=True
    )
    controller_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("controllers.id"), primary_key=True
    )
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Reappearance(Base):
    """A record registered for an identity erased within the memory period, for review."""

    __tablename__ = "reappeared_records"
    __table_args__ = (UniqueConstraint("record_id", "request_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    record_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("records.id", ondelete="CASCADE"), index=True
    )
    # The erasure it reappeared after.
    request_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("subject_requests.id", ondelete="CASCADE"), index=True
    )
    controller_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("controllers.id"), index=True)
    system: Mapped[str] = mapped_column(String(100), ForeignKey("systems.key"))
    flagged_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reviewed_by_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    review_note: Mapped[str | None] = mapped_column(Text)
