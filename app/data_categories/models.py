from sqlalchemy import Boolean, CheckConstraint, ForeignKey, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, Versioned


class DataCategory(Versioned, Base):
    """A dotted category key (`communications.recording`); its parent must exist."""

    __tablename__ = "data_categories"
    __table_args__ = (
        CheckConstraint("sensitivity IN ('low', 'medium', 'high')", name="sensitivity"),
    )

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    parent_key: Mapped[str | None] = mapped_column(
        String(200), ForeignKey("data_categories.key"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    sensitivity: Mapped[str] = mapped_column(String(10), default="medium")
    # The matching key of the open fideslang taxonomy, so partners can translate.
    fideslang: Mapped[str | None] = mapped_column(String(200))
    # Data the subject gave (Art. 20(1)): what a portability package hands back.
    subject_provided: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
