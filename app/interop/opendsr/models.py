import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, utcnow


class OpenDsrRequest(Base):
    """An OpenDSR request as its controller named it, and the subject request it became.
    The controller's `subject_request_id` is unique only within that controller."""

    __tablename__ = "opendsr_requests"
    __table_args__ = (UniqueConstraint("controller_id", "subject_request_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    controller_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("controllers.id", ondelete="CASCADE")
    )
    subject_request_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    request_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("subject_requests.id", ondelete="CASCADE"), unique=True
    )
    # The controller's URLs for status callbacks (its own endpoints: no personal data).
    status_callback_urls: Mapped[list[str]] = mapped_column(JSON, default=list)
    api_version: Mapped[str] = mapped_column(String(10))
    # The OpenDSR status last announced to the callbacks: a change is announced once.
    announced_status: Mapped[str] = mapped_column(String(12))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Free of personal data: what the controller's extensions asked of us, by key only.
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
