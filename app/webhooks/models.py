import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, utcnow
from app.core.ids import new_id


class WebhookSecret(Base):
    """A system's signing secret (`whsec_`), sealed at rest. Rotating adds a new one and gives
    the old one a `retires_at`: until then deliveries carry a signature under each."""

    __tablename__ = "webhook_secrets"
    __table_args__ = (
        CheckConstraint("target_kind IN ('system')", name="target_kind"),
        Index("ix_webhook_secrets_target", "target_kind", "target_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    target_kind: Mapped[str] = mapped_column(String(12))
    target_id: Mapped[str] = mapped_column(String(100))
    secret_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
