import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, utcnow
from app.core.ids import new_id


class Suppression(Base):
    """An opted-out identity (as its blind index) for a channel, purpose and controller."""

    __tablename__ = "suppressions"
    __table_args__ = (
        CheckConstraint("channel IN ('email', 'sms', 'voice', 'all')", name="channel"),
        CheckConstraint(
            "source IN ('unsubscribe_link', 'sms_stop', 'request', 'gpc', 'manual')",
            name="source",
        ),
        # One row per identity, channel, purpose and controller; the check probes by digest.
        Index(
            "uq_suppressions_identity_scope",
            "digest",
            "controller_id",
            "purpose",
            "channel",
            unique=True,
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    identity_type: Mapped[str] = mapped_column(String(20))
    digest: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(10))
    purpose: Mapped[str] = mapped_column(String(200), ForeignKey("purposes.key"))
    controller_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("controllers.id"))
    source: Mapped[str] = mapped_column(String(20))
    request_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("subject_requests.id"), index=True
    )
    created_by_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
