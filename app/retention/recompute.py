"""Recompute stored retention decisions after a rule or hold changes: only the records the
change can reach, found through their profiles, streamed in chunks with constant memory."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    Boolean,
    DateTime,
    Select,
    String,
    Table,
    Uuid,
    bindparam,
    exists,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import utcnow
from app.records.models import (
    Record,
    RecordIdentity,
    RecordProfile,
    RecordProfileCategory,
    RecordProfilePurpose,
)
from app.retention import engine, policy

CHUNK = 2000
records_table: Table = Record.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Scope:
    """The reach of a rule or hold: every set field must match (None matches anything)."""

    controller_id: uuid.UUID | None = None
    system: str | None = None
    region: str | None = None
    category: str | None = None
    purpose: str | None = None
    digests: frozenset[str] = frozenset()
    record_ids: frozenset[uuid.UUID] = frozenset()

    @classmethod
    def of(cls, obj: Any) -> Scope:
        return cls(
            controller_id=getattr(obj, "controller_id", None),
            system=getattr(obj, "system", None),
            region=getattr(obj, "region", None),
            category=getattr(obj, "category", None),
            purpose=getattr(obj, "purpose", None),
        )


def profiles_in(scope: Scope) -> Select[uuid.UUID]:
    statement = select(RecordProfile.id)
    if scope.controller_id is not None:
        statement = statement.where(RecordProfile.controller_id == scope.controller_id)
    if scope.system is not None:
        statement = statement.where(RecordProfile.system == scope.system)
    if scope.region is not None:
        statement = statement.where(RecordProfile.region == scope.region)
    if scope.category is not None:
        statement = statement.where(
            exists().where(
                RecordProfileCategory.profile_id == RecordProfile.id,
                or_(
                    RecordProfileCategory.category == scope.category,
                    RecordProfileCategory.category.startswith(
                        scope.category + ".", autoescape=True
                    ),
                ),
            )
        )
    if scope.purpose is not None:
        statement = statement.where(
            exists().where(
                RecordProfilePurpose.profile_id == RecordProfile.id,
                RecordProfilePurpose.purpose == scope.purpose,
            )
        )
    return statement


_RECORD_COLUMNS = (
    Record.id,
    Record.profile_id,
    Record.collected_at,
    Record.last_activity_at,
    Record.events,
    Record.state,
    Record.held,
    Record.keep_until,
    Record.keep_indefinitely,
    Record.delete_by,
    Record.action,
)


async def _chunks(
    session: AsyncSession, profile_id: uuid.UUID, scope: Scope
) -> AsyncIterator[list[Any]]:
    """One profile's records in keyset chunks along ix_records_profile_id_id: every chunk is
    one index range read, however large the profile."""
    last: uuid.UUID | None = None
    while True:
        statement = (
            select(*_RECORD_COLUMNS)
            .where(Record.profile_id == profile_id, Record.state != "erased")
            .order_by(Record.id)
            .limit(CHUNK)
        )
        if scope.record_ids:
            statement = statement.where(Record.id.in_(scope.record_ids))
        if scope.digests:
            statement = statement.where(
                Record.id.in_(
                    select(RecordIdentity.record_id).where(RecordIdentity.digest.in_(scope.digests))
                )
            )
        if last is not None:
            statement = statement.where(Record.id > last)
        rows = list((await session.execute(statement)).all())
        if not rows:
            return
        yield rows
        last = rows[-1].id


async def _digests(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, set[str]]:
    found: dict[uuid.UUID, set[str]] = {}
    for record_id, digest in await session.execute(
        select(RecordIdentity.record_id, RecordIdentity.digest).where(
            RecordIdentity.record_id.in_(ids)
        )
    ):
        found.setdefault(record_id, set()).add(digest)
    return found


def _events(raw: dict[str, str] | None) -> dict[str, datetime]:
    return {name: datetime.fromisoformat(ts) for name, ts in (raw or {}).items()}


async def _decided(
    session: AsyncSession,
    scope: Scope,
    rules: engine.RuleBook,
    holds: engine.HoldBook,
    now: datetime,
) -> AsyncIterator[list[tuple[Any, policy.Decision]]]:
    """Chunks of (stored record row, fresh decision) for every record the scope reaches."""
    need_digests = any(hold.digests for hold in holds.holds)
    profiles = {
        row.id: row
        for row in (
            await session.execute(
                select(RecordProfile).where(RecordProfile.id.in_(profiles_in(scope)))
            )
        ).scalars()
    }
    facts = {pid: engine.profile_facts(p) for pid, p in profiles.items()}
    # Small profiles are gathered into one chunk, so writes stay a statement per chunk.
    decided: list[tuple[Any, policy.Decision]] = []
    for profile_id in profiles:
        async for rows in _chunks(session, profile_id, scope):
            digests = await _digests(session, [r.id for r in rows]) if need_digests else {}
            for row in rows:
                dates = engine.RecordDates(
                    id=row.id,
                    collected_at=row.collected_at,
                    last_activity_at=row.last_activity_at,
                    events=_events(row.events),
                    restricted=row.state == "restricted",
                    digests=frozenset(digests.get(row.id, ())),
                )
                decided.append(
                    (row, engine.decide(rules, holds, facts[row.profile_id], dates, now))
                )
            if len(decided) >= CHUNK:
                yield decided
                decided = []
    if decided:
        yield decided


async def recompute(
    session: AsyncSession, scopes: Iterable[Scope], *, now: datetime | None = None
) -> int:
    """Recompute every record that any of these scopes reaches; returns how many."""
    now = now or utcnow()
    rules = await engine.load_rulebook(session)
    holds = await engine.load_holdbook(session)
    done = 0
    for scope in scopes:
        async for decided in _decided(session, scope, rules, holds, now):
            await _write(session, [(row.id, engine.stored_columns(d)) for row, d in decided])
            done += len(decided)
    return done


_BULK_UPDATE = text(
    """
    UPDATE records AS r SET held = v.held, keep_until = v.keep_until,
        keep_indefinitely = v.keep_indefinitely, delete_by = v.delete_by, action = v.action,
        retention = CAST(v.retention AS JSON)
    FROM unnest(:ids, :held, :keep_until, :keep_indefinitely, :delete_by, :action, :retention)
        AS v(id, held, keep_until, keep_indefinitely, delete_by, action, retention)
    WHERE r.id = v.id
    """
).bindparams(
    bindparam("ids", type_=ARRAY(Uuid())),
    bindparam("held", type_=ARRAY(Boolean())),
    bindparam("keep_until", type_=ARRAY(DateTime(timezone=True))),
    bindparam("keep_indefinitely", type_=ARRAY(Boolean())),
    bindparam("delete_by", type_=ARRAY(DateTime(timezone=True))),
    bindparam("action", type_=ARRAY(String())),
    bindparam("retention", type_=ARRAY(String())),
)


async def _write(session: AsyncSession, decisions: list[tuple[uuid.UUID, dict[str, Any]]]) -> None:
    """Store a chunk of decisions: on PostgreSQL one UPDATE joined to unnested arrays (an
    executemany costs a statement per row), elsewhere an executemany by primary key."""
    if session.get_bind().dialect.name != "postgresql":
        await session.execute(
            update(records_table).where(records_table.c.id == bindparam("b_id")),
            [{"b_id": record_id, **columns} for record_id, columns in decisions],
        )
        return
    await session.execute(
        _BULK_UPDATE,
        {
            "ids": [record_id for record_id, _ in decisions],
            "held": [c["held"] for _, c in decisions],
            "keep_until": [c["keep_until"] for _, c in decisions],
            "keep_indefinitely": [c["keep_indefinitely"] for _, c in decisions],
            "delete_by": [c["delete_by"] for _, c in decisions],
            "action": [c["action"] for _, c in decisions],
            "retention": [orjson.dumps(c["retention"]).decode() for _, c in decisions],
        },
    )


@dataclass(frozen=True, slots=True)
class Simulation:
    records_matched: int
    would_become_due: int
    would_change: int


async def simulate(
    session: AsyncSession, rule: policy.Rule, scope: Scope, *, now: datetime | None = None
) -> Simulation:
    """What adding `rule` would do to stored decisions, computed and thrown away."""
    now = now or utcnow()
    current = await engine.load_rulebook(session)
    rules = engine.RuleBook([*current.rules, rule])
    holds = await engine.load_holdbook(session)
    matched = becoming_due = changing = 0
    async for decided in _decided(session, scope, rules, holds, now):
        for row, decision in decided:
            if not any(outcome.rule_id == rule.id for outcome in decision.rules):
                continue  # the scope reached the profile, but the rule does not apply to it
            matched += 1
            before = (row.keep_until, row.keep_indefinitely, row.delete_by, row.action)
            after = (
                decision.keep_until,
                decision.keep_indefinitely,
                decision.delete_by,
                decision.action,
            )
            changing += before != after
            was_due = (
                policy.status_at(
                    row.held, row.keep_until, row.keep_indefinitely, row.delete_by, now
                )
                == "due"
            )
            becoming_due += decision.status == "due" and not was_due
    return Simulation(matched, becoming_due, changing)
