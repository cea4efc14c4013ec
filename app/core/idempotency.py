"""Idempotency-Key for creating POSTs.

The key is claimed with an INSERT in the request's own transaction, so a concurrent request
with the same key waits on the unique index and then replays the committed answer; the
answer is stored in that transaction too, so a change and its stored response commit together.

The stored answer is sealed with the secret box (AES-GCM, bound to the row), because some
answers carry a secret shown once (a verification code, a webhook signing secret): a replay
returns the same answer, and nothing in the table is readable without the key. A row is
replayed for `idempotency_ttl_hours` after it was claimed; after that the key counts as new
(the claim takes the row over) and `spix-dsr idempotency purge` deletes such rows.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    Uuid,
    delete,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.core.crypto import SecretBox
from app.core.db import Base, UTCDateTime, utcnow
from app.core.errors import AppError, Conflict
from app.core.ids import new_id
from app.core.session import SessionDep


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("key_id", "key"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    key_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    # Sealed (see the module's note); rows written before sealing hold plain JSON without secrets.
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    response_headers: Mapped[dict[str, str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class IdempotentReplay(AppError):
    """Not an error: carries the stored response of an earlier request with the same key."""

    def __init__(self, response: Response) -> None:
        super().__init__("replay")
        self.response = response


class Idempotency:
    """Handed to a creating endpoint; `respond` builds the answer and stores it for replays."""

    def __init__(
        self, session: AsyncSession, record_id: uuid.UUID | None, box: SecretBox | None = None
    ) -> None:
        self._session = session
        self._record_id = record_id
        self._box = box

    async def respond(
        self, body: BaseModel, status_code: int, headers: dict[str, str] | None = None
    ) -> Response:
        payload = body.model_dump_json().encode()
        if self._record_id is not None:
            assert self._box is not None
            sealed = _seal(self._box, self._record_id, payload)
            await self._session.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.id == self._record_id)
                .values(status_code=status_code, response_body=sealed, response_headers=headers)
            )
        return Response(
            payload, status_code=status_code, media_type="application/json", headers=headers
        )


def _context(record_id: uuid.UUID) -> str:
    return f"idempotency:{record_id}"


def _seal(box: SecretBox, record_id: uuid.UUID, payload: bytes) -> bytes:
    return box.seal(payload.decode(), context=_context(record_id)).encode()


def _open(box: SecretBox, record_id: uuid.UUID, stored: bytes) -> bytes:
    if stored.startswith(b"{"):  # written before answers were sealed (none holds a secret)
        return stored
    return box.open(stored.decode(), context=_context(record_id)).encode()


def _fingerprint(method: str, path: str, body: bytes) -> str:
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:
        canonical = body
    digest = hashlib.sha256(f"{method} {path}\n".encode())
    digest.update(canonical)
    return digest.hexdigest()


async def _claim(
    session: AsyncSession, key_id: uuid.UUID, key: str, request_hash: str, ttl: timedelta
) -> uuid.UUID | None:
    """The row's id when this request owns the key: a new key, or one whose row expired (it is
    taken over in the same statement, so two requests reusing an expired key get one owner)."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    now = utcnow()
    values = insert(IdempotencyRecord).values(
        id=new_id(), key_id=key_id, key=key, request_hash=request_hash, created_at=now
    )
    statement = values.on_conflict_do_update(
        index_elements=["key_id", "key"],
        set_={
            "request_hash": request_hash,
            "status_code": None,
            "response_body": None,
            "response_headers": None,
            "created_at": now,
        },
        where=IdempotencyRecord.created_at < now - ttl,
    ).returning(IdempotencyRecord.id)
    return (await session.execute(statement)).scalar_one_or_none()


async def purge_expired(session: AsyncSession, ttl: timedelta, *, batch: int = 1000) -> int:
    """Delete up to `batch` rows older than the replay time; the caller commits and repeats."""
    cutoff = utcnow() - ttl
    stale = (
        select(IdempotencyRecord.id)
        .where(IdempotencyRecord.created_at < cutoff)
        .order_by(IdempotencyRecord.created_at)
        .limit(batch)
    )
    ids = (await session.scalars(stale)).all()
    if not ids:
        return 0
    # Checked again: a request may have taken a row over (made it fresh) since the read.
    result = await session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.id.in_(ids), IdempotencyRecord.created_at < cutoff
        )
    )
    return int(getattr(result, "rowcount", 0))


async def idempotency(
    request: Request,
    session: SessionDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=255,
            description="Replays the first answer for the same key and body; 409 for another body",
        ),
    ] = None,
) -> Idempotency:
    if idempotency_key is None:
        return Idempotency(session, None)
    box: SecretBox = request.app.state.secret_box
    ttl = timedelta(hours=request.app.state.settings.idempotency_ttl_hours)
    principal: Any = getattr(request.state, "principal", None)
    if principal is None:  # the endpoint's auth dependency runs first; this is a wiring fault
        raise RuntimeError("idempotency needs an authenticated principal")
    request_hash = _fingerprint(request.method, request.url.path, await request.body())
    record_id = await _claim(session, principal.key_id, idempotency_key, request_hash, ttl)
    if record_id is not None:
        return Idempotency(session, record_id, box)
    existing = (
        await session.execute(
            select(IdempotencyRecord).where(
                IdempotencyRecord.key_id == principal.key_id,
                IdempotencyRecord.key == idempotency_key,
            )
        )
    ).scalar_one_or_none()
    if existing is None:  # expired and purged between the claim and this read
        raise Conflict("This Idempotency-Key expired while the request was read; retry it")
    if existing.request_hash != request_hash:
        raise Conflict("This Idempotency-Key was used with another request body")
    if existing.status_code is None or existing.response_body is None:
        raise Conflict("A request with this Idempotency-Key is still being processed")
    headers = dict(existing.response_headers or {})
    headers["Idempotent-Replayed"] = "true"
    raise IdempotentReplay(
        Response(
            _open(box, existing.id, existing.response_body),
            status_code=existing.status_code,
            media_type="application/json",
            headers=headers,
        )
    )


IdempotencyDep = Annotated[Idempotency, Depends(idempotency)]
