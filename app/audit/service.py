"""The audit log: events are collected during a transaction, written sealed with its commit
(or dropped with its rollback) and linked into the hash chain right after it (app/audit/chain.py),
so a writing transaction never waits for the chain head.

Keys, links and seals: app/audit/hashing.py. Truncation is caught with checkpoints (see
app/audit/checkpoint.py), kept outside the database.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Table, event, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.audit.chain import link_after_commit, read_pending
from app.audit.hashing import (
    GENESIS_HASH,
    audit_key,
    event_hash,
    event_seal,
    sealed,
    unkeyed_hash,
    use_audit_key,
)
from app.audit.models import AuditChainHead, AuditEvent
from app.auth.service import Principal
from app.core.db import utcnow
from app.core.ids import new_id
from app.core.session import AFTER_COMMIT, AUDIT_KEY_INFO

__all__ = ["GENESIS_HASH", "audit_key", "event_hash", "unkeyed_hash", "use_audit_key"]

_PENDING = "audit_pending"
_EVENTS: Table = AuditEvent.__table__  # type: ignore[assignment]


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


# What an event holds: its content (what the seal and the link cover) and its position.
_CONTENT = (
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
_FIELDS = ("seq", *_CONTENT)
# The columns of an event a transaction writes (the entry is the database's, the link the
# chain's): what `take_sealed` hands a statement to write.
WRITTEN_COLUMNS = (*_CONTENT, "seal")


def _sealed_pending(session: Session) -> list[dict[str, Any]]:
    """The events queued so far, taken from the queue and sealed; the commit links them."""
    pending: list[dict[str, Any]] = session.info.pop(_PENDING, [])
    if not pending:
        return pending
    key = session.info.get(AUDIT_KEY_INFO) or audit_key()
    for row in pending:
        row["seal"] = event_seal(key, row)
    session.info.setdefault(AFTER_COMMIT, {})["audit"] = link_after_commit(key)
    return pending


def take_sealed(session: AsyncSession) -> list[dict[str, Any]]:
    """On PostgreSQL, the events queued so far in this transaction, sealed, for a statement of
    the caller's to write with its own rows (their entries come from the sequence): a round
    trip less than writing them at commit. The commit writes any queued after, and links all
    of them. Elsewhere nothing: SQLite numbers events under its write lock, at commit."""
    if session.get_bind().dialect.name != "postgresql":
        return []
    return _sealed_pending(session.sync_session)


@event.listens_for(Session, "before_commit")
def _append_pending(session: Session) -> None:
    """Write the transaction's events, sealed and unlinked: no lock beyond the rows' own."""
    pending = _sealed_pending(session)
    if not pending:
        return
    if session.get_bind().dialect.name == "sqlite":
        # No sequences here; the transaction holds the database's write lock (BEGIN
        # IMMEDIATE), so the next numbers are this transaction's. PostgreSQL: a sequence.
        last = session.execute(select(func.coalesce(func.max(AuditEvent.entry), 0))).scalar_one()
        for entry, row in enumerate(pending, start=last + 1):
            row["entry"] = entry
    # Core on the session's connection: the ORM's bulk insert would rebuild every row. The
    # flush first writes what the events may name (a request added in this transaction),
    # as the ORM statement's autoflush did.
    session.flush()
    session.connection().execute(insert(_EVENTS), pending)


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
    # Committed events after the verified head that wait to be linked, their seals intact
    # (the linking step takes them; until then they are sealed, not chained).
    pending: int = 0

    @property
    def ok(self) -> bool:
        return self.reason is None


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
        last_seq = rows[-1].seq or last
        session.expunge_all()


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
    the walk began; name the first event whose link or content is wrong. Then count the
    committed events waiting to be linked after it, and check their seals. Reads only."""
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
        prev_hash, expected_seq = anchor.prev_hash or "", since.seq
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
        if not hmac.compare_digest(expected, ev.hash or ""):
            return ChainReport(
                checked, ev.seq, ev.id, "the event's content does not match its hash", keyed_from
            )
        prev_hash, expected_seq, checked = expected, expected_seq + 1, checked + 1
    if head_seq != expected_seq - 1 or head_hash != prev_hash:
        return ChainReport(
            checked, expected_seq, None, "events after the last one were removed", keyed_from
        )
    return await _check_pending(session, key, ChainReport(checked, keyed_from=keyed_from), chunk)


async def _check_pending(
    session: AsyncSession, key: bytes, report: ChainReport, chunk: int
) -> ChainReport:
    """The unlinked tail, honestly: how many events wait to be linked, and the first whose
    seal does not match (written or changed without the key: the linking step refuses it)."""
    after, pending = 0, 0
    while True:
        rows = await read_pending(session, chunk, after=after)
        for row in rows:
            if not sealed(key, row):
                return replace(
                    report,
                    broken_event_id=row["id"],
                    reason="an event waiting to be linked does not carry its seal: it was "
                    "written or changed without the audit key",
                    pending=pending,
                )
            pending += 1
        if len(rows) < chunk:
            return replace(report, pending=pending)
        after = rows[-1]["entry"]
