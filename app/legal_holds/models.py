import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, utcnow
from app.core.ids import new_id


class LegalHold(Base):
    """Nothing in its scope is deleted until it is released; holds are never deleted."""

    __tablename__ = "legal_holds"
    __table_args__ = (Index("ix_legal_holds_active", "released_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    reason: Mapped[str] = mapped_column(Text)
    controller_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("controllers.id"))
    system: Mapped[str | None] = mapped_column(String(100), ForeignKey("systems.key"))
    category: Mapped[str | None] = mapped_column(String(200), ForeignKey("data_categories.key"))
    placed_by_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    released_by_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    release_note: Mapped[str | None] = mapped_column(Text)


class LegalHoldIdentity(Base):
    """A subject identity in a hold's scope, as its blind index only."""

    __tablename__ = "legal_hold_identities"

    hold_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("legal_holds.id", ondelete="CASCADE"), primary_key=True
    )
    identity_type: Mapped[str] = mapped_column(String(20), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    key_id: Mapped[str] = mapped_column(String(16))


class LegalHoldRecord(Base):
    """A record named by id in a hold's scope."""

    __tablename__ = "legal_hold_records"

    hold_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("legal_holds.id", ondelete="CASCADE"), primary_key=True
    )
    record_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("records.id"), primary_key=True, index=True
    )
