from sqlalchemy import JSON, Boolean, CheckConstraint, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, Versioned

LEGAL_BASES = (
    "contract",
    "legitimate_interest",
    "consent",
    "legal_obligation",
    "vital_interest",
    "public_task",
)


class Purpose(Versioned, Base):
    __tablename__ = "purposes"
    __table_args__ = (
        CheckConstraint(
            "legal_basis IN ('contract', 'legitimate_interest', 'consent', 'legal_obligation', "
            "'vital_interest', 'public_task')",
            name="legal_basis",
        ),
    )

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    legal_basis: Mapped[str] = mapped_column(String(30))
    # Objection to this purpose always wins (direct marketing, GDPR Art. 21(3)).
    objection_absolute: Mapped[bool] = mapped_column(Boolean, default=False)
    fideslang: Mapped[str | None] = mapped_column(String(200))
    # Art. 30(1)(c): whose data this purpose processes (users, customers' end users ...).
    data_subject_categories: Mapped[list[str]] = mapped_column(
        JSON, default=list, server_default="[]"
    )
