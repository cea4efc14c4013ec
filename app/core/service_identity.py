"""Which subject key a database's identities are stored under.

One row records the subject key's id and a fingerprint of the key (an HMAC of a fixed label,
never the key): a process whose key differs (another data folder's development key, a wrong
secret) is refused before it hashes anything, instead of storing identities no lookup finds."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, String, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Mapped, mapped_column

from app.core.config import ConfigurationError
from app.core.db import Base, UTCDateTime, utcnow

_LABEL = b"spix-dsr subject key fingerprint v1"


class ServiceIdentity(Base):
    __tablename__ = "service_identity"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    subject_key_id: Mapped[str] = mapped_column(String(12))
    subject_key_fingerprint: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SubjectKeyMismatch(ConfigurationError):
    """The configured subject key is not the one this database's identities use."""


def key_fingerprint(key: bytes) -> str:
    return hmac.new(key, _LABEL, hashlib.sha256).hexdigest()


async def stored_identity(connection: AsyncConnection) -> tuple[str, str] | None:
    """(key id, fingerprint) recorded in this database, if any."""
    row = (
        await connection.execute(
            select(ServiceIdentity.subject_key_id, ServiceIdentity.subject_key_fingerprint)
        )
    ).first()
    return (row[0], row[1]) if row else None


async def check_subject_key(
    connection: AsyncConnection, key_id: str, key: bytes, *, where: str, source: str
) -> None:
    """Record the key on first use; afterwards refuse any other key (SubjectKeyMismatch).
    `where` names the database and `source` the key's origin, for the message."""
    fingerprint = key_fingerprint(key)
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    await connection.execute(
        insert(ServiceIdentity)
        .values(
            id=1, subject_key_id=key_id, subject_key_fingerprint=fingerprint, recorded_at=utcnow()
        )
        .on_conflict_do_nothing(index_elements=["id"])
    )
    stored = await stored_identity(connection)
    assert stored is not None
    if stored != (key_id, fingerprint):
        raise SubjectKeyMismatch(mismatch_message(stored[0], where, key_id, source))


def mismatch_message(stored_key_id: str, where: str, key_id: str, source: str) -> str:
    return (
        f"the database at {where} stores identities under subject key {stored_key_id!r}, and "
        f"the configured key {key_id!r} (from {source}) is not that key: refusing to hash with "
        "it (set SPIX_DSR_DATA_DIR or SPIX_DSR_SUBJECT_KEY to the key this database uses)"
    )
