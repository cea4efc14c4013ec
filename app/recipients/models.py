from sqlalchemy import JSON, CheckConstraint, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, Versioned

ROLES = ("processor", "sub_processor", "third_party", "controller")
SAFEGUARDS = ("not_applicable", "adequacy", "scc", "bcr", "derogation", "none")


class Recipient(Versioned, Base):
    """Someone outside Spix's own systems to whom personal data is disclosed (GDPR Art. 4(9)):
    a processor, a sub-processor, a third party or another controller. It receives what the
    systems it is linked to hold, so a record in system S is disclosed to S's recipients."""

    __tablename__ = "recipients"
    __table_args__ = (
        CheckConstraint(
            "role IN ('processor', 'sub_processor', 'third_party', 'controller')", name="role"
        ),
        CheckConstraint(
            "transfer_safeguard IN ('not_applicable', 'adequacy', 'scc', 'bcr', 'derogation', "
            "'none')",
            name="transfer_safeguard",
        ),
    )

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    # ISO 3166-1 alpha-2 of where the recipient processes the data.
    country: Mapped[str] = mapped_column(String(2))
    transfer_safeguard: Mapped[str] = mapped_column(String(20))
    description: Mapped[str | None] = mapped_column(Text)
    # Keys of the systems whose data this recipient receives.
    systems: Mapped[list[str]] = mapped_column(JSON, default=list)
