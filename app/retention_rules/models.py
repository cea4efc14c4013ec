import uuid

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, Versioned
from app.core.ids import new_id


class RetentionRule(Versioned, Base):
    """A minimum (keep at least) or maximum (delete by) period over a scope of records."""

    __tablename__ = "retention_rules"
    __table_args__ = (
        CheckConstraint("kind IN ('minimum', 'maximum')", name="kind"),
        CheckConstraint("action IN ('delete', 'anonymize')", name="action"),
        CheckConstraint(
            "source IN ('law', 'contract', 'platform_default', 'customer_setting')", name="source"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    # A stable slug for rules loaded from a file, so loading twice changes nothing.
    key: Mapped[str | None] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(10))
    period: Mapped[str] = mapped_column(String(40))
    anchor: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(10), default="delete")
    source: Mapped[str] = mapped_column(String(20))
    citation: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(
        String(200), ForeignKey("data_categories.key"), index=True
    )
    purpose: Mapped[str | None] = mapped_column(String(200), ForeignKey("purposes.key"))
    controller_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("controllers.id"), index=True
    )
    system: Mapped[str | None] = mapped_column(String(100), ForeignKey("systems.key"))
    region: Mapped[str | None] = mapped_column(String(50))
    default_to_review: Mapped[bool] = mapped_column(Boolean, default=False)
