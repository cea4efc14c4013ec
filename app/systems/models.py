from sqlalchemy import Boolean, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, Versioned


class System(Versioned, Base):
    """An internal Spix service that holds personal data, addressed by its key."""

    __tablename__ = "systems"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    # Standard Webhooks scheme of its deliveries: `v1` (HMAC with its `whsec_` secret) or
    # `v1a` (Ed25519 with the service's webhook key: the receiver holds only a public key).
    webhook_signature_scheme: Mapped[str] = mapped_column(
        String(4), default="v1", server_default="v1"
    )
    # Asks for `retention.records_due` events: its records' deletion deadlines, pushed.
    push_records_due: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
