import uuid
from datetime import date

from sqlalchemy import Boolean, CheckConstraint, Date, Index, String, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, Versioned
from app.core.ids import new_id


class Controller(Versioned, Base):
    """Spix itself (kind platform, exactly one) or a customer, with its relationship to Spix."""

    __tablename__ = "controllers"
    __table_args__ = (
        CheckConstraint("kind IN ('platform', 'customer')", name="kind"),
        CheckConstraint("dsr_routing_mode IN ('webhook', 'dashboard')", name="routing_mode"),
        CheckConstraint(
            "dsr_routing_mode = 'dashboard' OR webhook_url IS NOT NULL", name="webhook_has_url"
        ),
        # Exactly one platform controller: a unique index over the platform row alone.
        Index(
            "uq_controllers_one_platform",
            "kind",
            unique=True,
            sqlite_where=text("kind = 'platform'"),
            postgresql_where=text("kind = 'platform'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    external_ref: Mapped[str | None] = mapped_column(String(200), unique=True)
    agreement_ref: Mapped[str | None] = mapped_column(String(200))
    effective_from: Mapped[date | None] = mapped_column(Date)
    effective_until: Mapped[date | None] = mapped_column(Date)
    dsr_routing_mode: Mapped[str] = mapped_column(String(20), default="dashboard")
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    # Sealed with the secret box: the worker must read it back to sign deliveries.
    webhook_secret_sealed: Mapped[str | None] = mapped_column(Text)
    # `v1` (HMAC with the secret above) or `v1a` (Ed25519 with the service's webhook key).
    webhook_signature_scheme: Mapped[str] = mapped_column(
        String(4), default="v1", server_default="v1"
    )
    auto_execute: Mapped[bool] = mapped_column(Boolean, default=False)
    # Art. 30(1)(a) and 13(1)(a)-(b): how to reach the controller and its data protection officer.
    contact: Mapped[str | None] = mapped_column(Text)
    dpo_contact: Mapped[str | None] = mapped_column(Text)
    # The platform's own statements, read into the RoPA and the access package: its security
    # measures (Art. 30(1)(g)) and whether it makes automated decisions (Art. 15(1)(h)).
    security_measures: Mapped[str | None] = mapped_column(Text)
    automated_decision_making: Mapped[str | None] = mapped_column(Text)
    # The customer's recorded standing instruction (GDPR Art. 28(3)(a)) that auto_execute
    # acts on: a ticket, an e-mail, a clause of the agreement.
    standing_instruction_ref: Mapped[str | None] = mapped_column(String(500))
