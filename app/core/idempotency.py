"""Idempotency-Key for creating POSTs.

The key is claimed with an INSERT in the request's own transaction, so a concurrent request
with the same key waits on the unique index and then replays the committed answer; the
answer is stored in that transaction too, so a change and its stored response commit together.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import JSON, Integer, LargeBinary, String, UniqueConstraint, Uuid, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

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

    def __init__(self, session: AsyncSession, record_id: uuid.UUID | None) -> None:
        self._session = session
        self._record_id = record_id

    async def respond(
        self, body: BaseModel, status_code: int, headers: dict[str, str] | None = None
    ) -> Response:
        payload = body.model_dump_json().encode()
        if self._record_id is not None:
            await self._session.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.id == self._record_id)
                .values(status_code=status_code, response_body=payload, response_headers=headers)
            )
        return Response(
            payload, status_code=status_code, media_type="application/json", headers=headers
        )


def _fingerprint(method: str, path: str, body: bytes) -> str:
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:
        canonical = body
    digest = hashlib.sha256(f"{method} {path}\n".encode())
    digest.update(canonical)
    return digest.hexdigest()


async def _claim(
    session: AsyncSession, key_id: uuid.UUID, key: str, request_hash: str
) -> uuid.UUID | None:
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    record_id = new_id()
    statement = (
        insert(IdempotencyRecord)
        .values(
            id=record_id, key_id=key_id, key=key, request_hash=request_hash, created_at=utcnow()
        )
        .on_conflict_do_nothing(index_elements=["key_id", "key"])
        .returning(IdempotencyRecord.id)
    )
    return (await session.execute(statement)).scalar_one_or_none()


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
    principal: Any = getattr(request.state, "principal", None)
    if principal is None:  # the endpoint's auth dependency runs first; this is a wiring fault
        raise RuntimeError("idempotency needs an authenticated principal")
    request_hash = _fingerprint(request.method, request.url.path, await request.body())
    record_id = await _claim(session, principal.key_id, idempotency_key, request_hash)
    if record_id is not None:
        return Idempotency(session, record_id)
    existing = (
        await session.execute(
            select(IdempotencyRecord).where(
                IdempotencyRecord.key_id == principal.key_id,
                IdempotencyRecord.key == idempotency_key,
            )
        )
    ).scalar_one()
    if existing.request_hash != request_hash:
        raise Conflict("This Idempotency-Key was used with another request body")
    if existing.status_code is None or existing.response_body is None:
        raise Conflict("A request with this Idempotency-Key is still being processed")
    headers = dict(existing.response_headers or {})
    headers["Idempotent-Replayed"] = "true"
    raise IdempotentReplay(
        Response(
            existing.response_body,
            status_code=existing.status_code,
            media_type="application/json",
            headers=headers,
        )
    )


IdempotencyDep = Annotated[Idempotency, Depends(idempotency)]
