"""The audit log: events are collected during a transaction and chained at its commit, so the
chain-head lock is held only for the last moment of a writing transaction.

Links are HMAC-SHA256 under the audit key (SPIX_DSR_AUDIT_KEY), so rewriting an event and
recomputing the hashes after it needs the key. Events chained before the key existed (below the
head row's `keyed_from_seq`) keep their plain SHA-256 links and are verified as such; every
event from there on must carry a keyed link. Truncation is caught with checkpoints (see
app/audit/checkpoint.py), kept outside the database.
"""

from __future__ import annotations

import hashlib
import hmac
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
from app.core.config import get_settings
from app.core.db import utcnow
from app.core.ids import new_id
from app.core.session import AUDIT_KEY_INFO

GENESIS_HASH = "0" * 64
_PENDING = "audit_pending"
_key: bytes | None = None


def use_audit_key(key: bytes) -> None:
    """Set the process's audit key (the CLI does, from its settings; the app hands its key to
    each request's session instead)."""
    global _key
    _key = key


def audit_key() -> bytes:
    """The process's audit key; unset, the configured one (production refuses to run without)."""
    global _key
    if _key is None:
        _key = get_settings().resolve_audit_key()
    return _key


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


def _canonical(row: dict[str, Any]) -> bytes:
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
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)


def event_hash(key: bytes, prev_hash: str, row: dict[str, Any]) -> str:
    """The keyed link: HMAC-SHA256(audit key, previous hash + the event's canonical JSON)."""
    return hmac.new(key, prev_hash.encode() + _canonical(row), hashlib.sha256).hexdigest()


def unkeyed_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """The link of events chained before the audit key (below `keyed_from_seq`)."""
    digest = hashlib.sha256(prev_hash.encode())
    digest.update(_canonical(row))
    return digest.hexdigest()


@event.listens_for(Session, "before_commit")
def _append_pending(session: Session) -> None:
    pending: list[dict[str, Any]] = session.info.pop(_PENDING, [])
    if not pending:
        return
    key = session.info.get(AUDIT_KEY_INFO) or audit_key()
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
        row["hash"] = prev_hash = event_hash(key, prev_hash, row)
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
    # Events below this position were chained before the audit key, with unkeyed links.
    keyed_from: int = 1

    @property
    def ok(self) -> bool:
        return self.broken_at_seq is None


async def _events_in_order(
    session: AsyncSession, first: int, last: int, chunk: int
) -> AsyncIterator[AuditEvent]:
    last_seq = first - 1
    while True:
        rows = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.seq > last_seq, AuditEvent.seq <= last)
                .order_by(AuditEvent.seq)
                .limit(chunk)
                .execution_options(populate_existing=True)
            )
        ).all()
        if not rows:
            return
        for row in rows:
            yield row
        last_seq = rows[-1].seq
        session.expunge_all()


_FIELDS = (
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


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where a walk starts: a checkpointed event, as the checkpoint describes it."""

    seq: int
    event_id: uuid.UUID
    hash: str
    keyed_from: int


async def verify_chain(
    session: AsyncSession,
    *,
    key: bytes | None = None,
    since: Anchor | None = None,
    chunk: int = 1000,
) -> ChainReport:
    """Walk the chain from the start (or from a checkpointed event) to the head as it was when
    the walk began; name the first event whose link or content is wrong."""
    key = key or audit_key()
    head_seq, head_hash, keyed_from = (
        await session.execute(
            select(AuditChainHead.seq, AuditChainHead.hash, AuditChainHead.keyed_from_seq).where(
                AuditChainHead.id == 1
            )
        )
    ).one()
    prev_hash, expected_seq = GENESIS_HASH, 1
    if since is not None:
        if since.keyed_from != keyed_from:
            return ChainReport(
                0, since.seq, since.event_id, "the start of keyed links moved since the checkpoint"
            )
        anchor = await session.scalar(
            select(AuditEvent)
            .where(AuditEvent.seq == since.seq)
            .execution_options(populate_existing=True)
        )
        if anchor is None or anchor.id != since.event_id or anchor.hash != since.hash:
            return ChainReport(
                0,
                since.seq,
                since.event_id,
                "the checkpointed event is missing or changed: the log was cut or rewritten",
            )
        prev_hash, expected_seq = anchor.prev_hash, since.seq
    checked = 0
    async for ev in _events_in_order(session, expected_seq, head_seq, chunk):
        fields = {c: getattr(ev, c) for c in _FIELDS}
        if ev.seq != expected_seq:
            return ChainReport(
                checked, expected_seq, ev.id, "an event is missing before this one", keyed_from
            )
        if ev.prev_hash != prev_hash:
            return ChainReport(
                checked, ev.seq, ev.id, "prev_hash does not match the event before", keyed_from
            )
        if ev.seq >= keyed_from:
            expected = event_hash(key, prev_hash, fields)
        else:
            expected = unkeyed_hash(prev_hash, fields)
        if not hmac.compare_digest(expected, ev.hash):
            return ChainReport(
                checked, ev.seq, ev.id, "the event's content does not match its hash", keyed_from
            )
        prev_hash, expected_seq, checked = ev.hash, expected_seq + 1, checked + 1
    if head_seq != expected_seq - 1 or head_hash != prev_hash:
        return ChainReport(
            checked, expected_seq, None, "events after the last one were removed", keyed_from
        )
    return ChainReport(checked, keyed_from=keyed_from)
