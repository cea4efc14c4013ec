"""Linking: a transaction writes its audit events sealed and unlinked (app/audit/service.py);
a short transaction of its own then links every committed, unlinked event into the hash chain,
in the order they were written (`entry`). Only this step locks the chain head, and it holds
no other lock, so a writing transaction never waits for the chain.

Why not link inside each writing transaction, as before: the head's row lock was then held
from the head read through the transaction's COMMIT (the fsync included), so every writing
transaction queued on one row while holding its own row locks and its connection. Under the
load model (tests/benchmarks/load_model.py) most busy connections sat waiting for that row.
Shortening the hold (one statement, a later lock) still serialises every commit behind it;
linking after the commit lets one linking transaction take the events of many commits at
once, and no writer waits for it.

Who links:
- an API request, after its commit, once its answer is sent (`link_after_commit`, run by the
  session dependency as a background task): the requests of one process that committed
  meanwhile share one linking transaction. The answer does not wait for it: the load model
  showed that a writer waiting for its link before answering halves the lifecycle's
  throughput, its clients (agents, dashboards) waiting for each answer;
- the worker, every round: its own jobs' events, and any an API process left unlinked (it
  stopped between its commit and the link, or the link failed);
- the command line before it exits, and `spix-dsr audit chain` on demand.

Order: an event is linked after every event that was committed before it was written (its
`entry` is higher, and it was visible to the linking step that saw it), so a change that saw
another's result comes after it on the chain. Events of transactions that commit
concurrently are linked in the order the linking step finds them, one total order.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, String, Table, Uuid, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.audit.hashing import audit_key, event_hash, sealed
from app.audit.models import AuditChainHead, AuditEvent
from app.core.db import Database

log = logging.getLogger("spix_dsr.audit")

BATCH = 1000
_EVENTS: Table = AuditEvent.__table__  # type: ignore[assignment]
_HEAD: Table = AuditChainHead.__table__  # type: ignore[assignment]
# The linking transaction's statements are Core, run on the session's connection: the ORM's
# execution (bulk update machinery, entity rows) cost it 1.7 times the CPU.
_LOCK_HEAD = select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1).with_for_update()
# One statement, executed for many rows.
_LINK = (
    update(_EVENTS)
    .where(_EVENTS.c.id == bindparam("event_id"))
    .values(
        seq=bindparam("to_seq"),
        prev_hash=bindparam("to_prev_hash"),
        hash=bindparam("to_hash"),
    )
)
_MOVE_HEAD = (
    update(_HEAD).where(_HEAD.c.id == 1).values(seq=bindparam("seq"), hash=bindparam("hash"))
)
# PostgreSQL: the events linked and the head moved in one statement (one round trip less).
_LINK_AND_MOVE_HEAD = text(
    """
    WITH linked AS (
        UPDATE audit_events AS e
        SET seq = l.seq, prev_hash = l.prev_hash, hash = l.hash
        FROM unnest(:ids, :seqs, :prev_hashes, :hashes) AS l(id, seq, prev_hash, hash)
        WHERE e.id = l.id
    )
    UPDATE audit_chain_head SET seq = :seq, hash = :hash WHERE id = 1
    """
).bindparams(
    bindparam("ids", type_=ARRAY(Uuid())),
    bindparam("seqs", type_=ARRAY(BigInteger())),
    bindparam("prev_hashes", type_=ARRAY(String())),
    bindparam("hashes", type_=ARRAY(String())),
    bindparam("seq", type_=BigInteger()),
    bindparam("hash", type_=String()),
)
_PENDING = _EVENTS.c.seq.is_(None)
_COLUMNS = (
    AuditEvent.id,
    AuditEvent.entry,
    AuditEvent.occurred_at,
    AuditEvent.event_type,
    AuditEvent.actor_key_id,
    AuditEvent.actor_role,
    AuditEvent.entity_type,
    AuditEvent.entity_id,
    AuditEvent.subject_request_id,
    AuditEvent.details,
    AuditEvent.seal,
)


async def read_pending(
    executor: AsyncSession | AsyncConnection,
    limit: int,
    *,
    after: int = 0,
    skip: Sequence[uuid.UUID] = (),
) -> list[dict[str, Any]]:
    """Committed events not linked yet, in the order they were written (after `entry` `after`,
    leaving out the ids in `skip`)."""
    statement = (
        select(*_COLUMNS)
        .where(_PENDING, _EVENTS.c.entry > after)
        .order_by(_EVENTS.c.entry)
        .limit(limit)
    )
    if skip:
        statement = statement.where(_EVENTS.c.id.not_in(skip))
    return [dict(row) for row in (await executor.execute(statement)).mappings()]


async def _link(connection: AsyncConnection, links: list[dict[str, Any]]) -> None:
    """Put the linked events on the chain and move its head to the last of them."""
    last = links[-1]
    if connection.dialect.name == "postgresql":
        await connection.execute(
            _LINK_AND_MOVE_HEAD,
            {
                "ids": [link["event_id"] for link in links],
                "seqs": [link["to_seq"] for link in links],
                "prev_hashes": [link["to_prev_hash"] for link in links],
                "hashes": [link["to_hash"] for link in links],
                "seq": last["to_seq"],
                "hash": last["to_hash"],
            },
        )
        return
    await connection.execute(_LINK, links)
    await connection.execute(_MOVE_HEAD, {"seq": last["to_seq"], "hash": last["to_hash"]})


@dataclass(frozen=True, slots=True)
class Linked:
    linked: int = 0
    # Unlinked events whose seal does not match this key: left where they are, unlinked.
    refused: int = 0


async def chain_pending(
    database: Database,
    key: bytes | None = None,
    *,
    batch: int = BATCH,
    look_first: bool = False,
) -> Linked:
    """Link every committed, unlinked event, in one short transaction per `batch` events.
    With `look_first`, a read without the lock first (the worker's round: usually nothing)."""
    key = key or audit_key()
    if look_first:
        async with database.read_sessionmaker() as reader:
            if await reader.scalar(select(AuditEvent.id).where(_PENDING).limit(1)) is None:
                return Linked()
    linked = 0
    refused: list[uuid.UUID] = []
    while True:
        async with database.sessionmaker() as session, session.begin():
            connection = await session.connection()
            seq, prev_hash = (await connection.execute(_LOCK_HEAD)).one()
            # From the first waiting event every time: one written earlier may have been
            # committed since the last batch, and it comes first.
            rows = await read_pending(connection, batch, skip=refused)
            links = []
            for row in rows:
                if not sealed(key, row):
                    refused.append(row["id"])
                    continue
                seq += 1
                link = {"event_id": row["id"], "to_seq": seq, "to_prev_hash": prev_hash}
                link["to_hash"] = prev_hash = event_hash(key, prev_hash, {**row, "seq": seq})
                links.append(link)
            if links:
                await _link(connection, links)
        linked += len(links)
        if len(rows) < batch:
            break
    if refused:
        # An alarm, not an error of this step: the event was written or changed without the
        # key (or this process holds another key). `spix-dsr audit verify` names it too.
        log.error(
            "audit events left unlinked: their seal does not match the audit key",
            extra={"refused": len(refused), "event_id": str(refused[0])},
        )
    return Linked(linked, len(refused))


async def pending_count(database: Database) -> int:
    async with database.read_sessionmaker() as reader:
        return int(await reader.scalar(select(func.count()).where(_PENDING)) or 0)


class _Group:
    """The committed requests of one process waiting for their events to be linked: one
    linking transaction at a time serves every request that committed before it started.
    It holds its database only while linking (the registry below is keyed by it, weakly)."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.waiting: list[asyncio.Future[None]] = []
        self.task: asyncio.Task[None] | None = None

    async def wait(self, database: Database) -> None:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        if self.task is None:
            # A task of its own, so that no waiter is held up for serving the others; it
            # ends once nobody waits.
            self.task = asyncio.get_running_loop().create_task(self._run(database))
        await future

    async def _run(self, database: Database) -> None:
        try:
            while self.waiting:
                served, self.waiting = self.waiting, []
                try:
                    await chain_pending(database, self.key)
                except Exception:
                    # The changes are committed and answered. The worker links the events
                    # on its next round.
                    log.exception("linking audit events failed; the worker will link them")
                for future in served:
                    if not future.done():
                        future.set_result(None)
        finally:
            self.task = None


_groups: weakref.WeakKeyDictionary[Database, dict[bytes, _Group]] = weakref.WeakKeyDictionary()


def link_after_commit(key: bytes) -> Callable[[Database], Awaitable[None]]:
    """What a committed transaction that wrote events leaves to do: return once they (and
    every event committed before them) are linked, or the attempt failed and was logged."""

    async def link(database: Database) -> None:
        groups = _groups.setdefault(database, {})
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(key)
        await group.wait(database)

    return link
