"""The audit log: events are collected during a transaction and chained at its commit, so the
chain-head lock is held only for the last moment of a writing transaction."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import event, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.audit.models import AuditChainHead, AuditEvent
from app.auth.service import Principal
from app.core.db import utcnow
from app.core.ids import new_id

GENESIS_HASH = "0" * 64
_PENDING = "audit_pending"


@dataclass(frozen=True, slots=True)
class Operator:
    """A person at the command line: no API key, but still an actor in the log."""

    key_id: None = None
    role: str = "operator"


OPERATOR = Operator()


def record(
    session: AsyncSession,
    actor: Principal | Operator,
    event_type: str,
    entity_type: str,
    entity_id: uuid.UUID | str,
    details: dict[str, Any] | None = None,
    *,
    subject_request_id: uuid.UUID | None = None,
) -> None:
    """Queue an event; it is written with the transaction's commit, or dropped with it.

    Details must hold ids, keys, hashes and enumerations only, never personal data."""
    session.info.setdefault(_PENDING, []).append(
        {
            "id": new_id(),
            "occurred_at": utcnow(),
            "event_type": event_type,
            "actor_key_id": actor.key_id,
            "actor_role": actor.role,
            "entity_type": entity_type,
            "entity_id": str(entity_id),
            "subject_request_id": subject_request_id,
            "details": details or {},
        }
    )


def event_hash(prev_hash: str, row: dict[str, Any]) -> str:
    payload = {
        "seq": row["seq"],
        "id": str(row["id"]),
        "occurred_at": row["occurred_at"].isoformat(),
        "event_type": row["event_type"],
        "actor_key_id": str(row["actor_key_id"]) if row["actor_key_id"] else None,
        "actor_role": row["actor_role"],
        "entity_type": row["entity_type"],
        "entity_id": row["entity_id"],
        "subject_request_id": (
            str(row["subject_request_id"]) if row["subject_request_id"] else None
        ),
        "details": row["details"],
    }
    digest = hashlib.sha256(prev_hash.encode())
    digest.update(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()


@event.listens_for(Session, "before_commit")
def _append_pending(session: Session) -> None:
    pending: list[dict[str, Any]] = session.info.pop(_PENDING, [])
    if not pending:
        return
    head = session.execute(
        select(AuditChainHead.seq, AuditChainHead.hash)
        .where(AuditChainHead.id == 1)
        .with_for_update()
    ).one()
    seq, prev_hash = head.seq, head.hash
    for row in pending:
        seq += 1
        row["seq"] = seq
        row["prev_hash"] = prev_hash
        row["hash"] = prev_hash = event_hash(prev_hash, row)
    session.execute(insert(AuditEvent), pending)
    session.execute(
        update(AuditChainHead).where(AuditChainHead.id == 1).values(seq=seq, hash=prev_hash)
    )


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session: Session, _previous_transaction: Any) -> None:
    session.info.pop(_PENDING, None)


@dataclass(frozen=True, slots=True)
class ChainReport:
    checked: int
    broken_at_seq: int | None = None
    broken_event_id: uuid.UUID | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at_seq is None


async def _events_in_order(session: AsyncSession, chunk: int) -> AsyncIterator[AuditEvent]:
    last_seq = 0
    while True:
        rows = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.seq > last_seq)
                .order_by(AuditEvent.seq)
                .limit(chunk)
            )
        ).all()
        if not rows:
            return
        for row in rows:
            yield row
        last_seq = rows[-1].seq
        session.expunge_all()


async def verify_chain(session: AsyncSession, *, chunk: int = 1000) -> ChainReport:
    """Walk the chain from the start; name the first event whose link or content is wrong."""
    prev_hash, expected_seq, checked = GENESIS_HASH, 1, 0
    async for ev in _events_in_order(session, chunk):
        fields = {
            c: getattr(ev, c)
            for c in (
                "seq",
                "id",
                "occurred_at",
                "event_type",
                "actor_key_id",
                "actor_role",
                "entity_type",
                "entity_id",
                "subject_request_id",
                "details",
            )
        }
        if ev.seq != expected_seq:
            return ChainReport(checked, expected_seq, ev.id, "an event is missing before this one")
        if ev.prev_hash != prev_hash:
            return ChainReport(checked, ev.seq, ev.id, "prev_hash does not match the event before")
        if event_hash(prev_hash, fields) != ev.hash:
            return ChainReport(
                checked, ev.seq, ev.id, "the event's content does not match its hash"
            )
        prev_hash, expected_seq, checked = ev.hash, expected_seq + 1, checked + 1
    head = (
        await session.execute(select(AuditChainHead).where(AuditChainHead.id == 1))
    ).scalar_one()
    if head.seq != expected_seq - 1 or head.hash != prev_hash:
        return ChainReport(checked, expected_seq, None, "events after the last one were removed")
    return ChainReport(checked)
