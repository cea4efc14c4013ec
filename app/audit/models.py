import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, FetchedValue, Index, Integer, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime

_POSITION = BigInteger().with_variant(Integer, "sqlite")


class AuditEvent(Base):
    """Append-only and hash-chained: `hash` covers the event and the previous hash.

    A transaction writes its events sealed and not yet linked (`seq`, `prev_hash` and `hash`
    empty); a short linking step of its own puts them on the chain afterwards, in `entry`
    order (app/audit/chain.py)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_entity", "entity_type", "entity_id", "seq"),
        # The events waiting to be linked: empty whenever the chain is current.
        Index(
            "ix_audit_events_pending",
            "entry",
            postgresql_where=text("seq IS NULL"),
            sqlite_where=text("seq IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # The order events were written in: a sequence on PostgreSQL (its default), the next
    # number under the database's write lock on SQLite (app/audit/service.py).
    entry: Mapped[int] = mapped_column(_POSITION, unique=True, server_default=FetchedValue())
    # Gapless position in the chain, assigned when the event is linked; NULL until then.
    seq: Mapped[int | None] = mapped_column(_POSITION, unique=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    event_type: Mapped[str] = mapped_column(String(100), index=True)
    actor_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    actor_role: Mapped[str] = mapped_column(String(20))
    entity_type: Mapped[str] = mapped_column(String(50))
    entity_id: Mapped[str] = mapped_column(String(200))
    # The subject request this event belongs to, so a request's history is one indexed read.
    subject_request_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    # HMAC of the event's content under the audit key, written with the event: only sealed
    # events are linked, so a row written or changed without the key never joins the chain.
    seal: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))


class AuditChainHead(Base):
    """One row: the last linked event. Only the linking step locks it (app/audit/chain.py)."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(_POSITION)
    hash: Mapped[str] = mapped_column(String(64))
    # The first event linked with the audit key's HMAC; events before it were chained unkeyed.
    keyed_from_seq: Mapped[int] = mapped_column(_POSITION, server_default="1")
