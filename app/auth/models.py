import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, utcnow
from app.core.ids import new_id

ROLES = ("admin", "auditor", "system", "controller")


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'auditor', 'system', 'controller')", name="role"),
        CheckConstraint("(role = 'system') = (system_key IS NOT NULL)", name="system_binding"),
        CheckConstraint(
            "(role = 'controller') = (controller_id IS NOT NULL)", name="controller_binding"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    # The public part of the key, used to find it; the secret part is only ever hashed.
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    system_key: Mapped[str | None] = mapped_column(String(100), ForeignKey("systems.key"))
    controller_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("controllers.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Approximate: stamped at most once a minute per key and process (app/auth/usage.py).
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
