"""Retention answers for callers: checks, the due sweep, coverage."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import Principal
from app.core.db import utcnow
from app.core.pagination import cursor_datetime, cursor_uuid, decode_cursor, encode_cursor
from app.legal_holds.models import LegalHold
from app.records.models import DUE_PREDICATE, Record, RecordProfile, record_rows, visible
from app.retention import citations, engine, policy
from app.retention.answer import name_rules, stored_decision
from app.retention.schemas import (
    CoverageItem,
    CoverageOut,
    DuePage,
    DueRecord,
    EligibilityIn,
    EligibilityResult,
)
from app.retention_rules.models import RetentionRule


async def eligibility(
    session: AsyncSession, principal: Principal, body: EligibilityIn
) -> list[EligibilityResult]:
    """Stored decisions for up to 1000 records in two indexed reads."""
    now = utcnow()
    ids = {loc.id for loc in body.records if loc.id is not None}
    refs = {(loc.system, loc.record_ref) for loc in body.records if loc.id is None}
    by_id: dict[uuid.UUID, Any] = {}
    by_ref: dict[tuple[str, str], Any] = {}
    if ids:
        for record, profile in await session.execute(visible(principal).where(Record.id.in_(ids))):
            by_id[record.id] = (record, profile)
    if refs:
        for record, profile in await session.execute(
            visible(principal).where(tuple_(Record.system, Record.record_ref).in_(refs))
        ):
            by_ref[(record.system, record.record_ref)] = (record, profile)
    holds = await engine.holds_of(
        session,
        [
            (record.id, engine.profile_facts(profile))
            for record, profile in (*by_id.values(), *by_ref.values())
            if record.held
        ],
    )
    results = []
    for index, loc in enumerate(body.records):
        found = by_id.get(loc.id) if loc.id else by_ref.get((loc.system, loc.record_ref))  # type: ignore[arg-type]
        if found is None:
            results.append(
                EligibilityResult(
                    index=index, found=False, system=loc.system, record_ref=loc.record_ref
                )
            )
        else:
            record, profile = found
            decision = stored_decision(record, profile.ranked_rules, holds.get(record.id, []), now)
            results.append(
                EligibilityResult(
                    index=index,
                    found=True,
                    system=record.system,
                    record_ref=record.record_ref,
                    decision=decision,
                )
            )
    await name_rules(session, [r.decision for r in results if r.decision is not None])
    return results


async def due(
    session: AsyncSession,
    principal: Principal,
    system: str | None,
    limit: int,
    cursor: str | None,
    now: datetime | None = None,
) -> DuePage:
    """Records past delete_by and not held, oldest first: one range scan of ix_records_due."""
    now = now or utcnow()
    # A system filter naming another system than a system key's own finds nothing.
    statement = select(
        Record.id, Record.system, Record.record_ref, Record.delete_by, Record.action
    ).where(text(DUE_PREDICATE), Record.delete_by <= now, record_rows(principal.visibility))
    if system is not None:
        statement = statement.where(Record.system == system)
    if cursor is not None:
        after = decode_cursor(cursor, cursor_datetime, cursor_uuid)
        statement = statement.where(tuple_(Record.delete_by, Record.id) > tuple(after))
    rows = (
        await session.execute(statement.order_by(Record.delete_by, Record.id).limit(limit + 1))
    ).all()
    items = [DueRecord.model_validate(row, from_attributes=True) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = encode_cursor([last.delete_by.isoformat(), str(last.id)])
    return DuePage(items=items, next_cursor=next_cursor)


async def coverage(session: AsyncSession, principal: Principal) -> CoverageOut:
    """Categories of active records that no maximum rule reaches, with counts."""
    counts = select(Record.profile_id, func.count().label("n")).where(
        Record.state != "erased", record_rows(principal.visibility)
    )
    per_profile: dict[uuid.UUID, int] = {
        pid: n for pid, n in await session.execute(counts.group_by(Record.profile_id))
    }
    rules = await engine.load_rulebook(session)
    uncovered: dict[str, int] = defaultdict(int)
    systems: dict[str, set[str]] = defaultdict(set)
    total = 0
    profile_ids = list(per_profile)
    for start in range(0, len(profile_ids), 500):
        profiles = (
            await session.scalars(
                select(RecordProfile).where(RecordProfile.id.in_(profile_ids[start : start + 500]))
            )
        ).all()
        for profile in profiles:
            if rules.ranked(engine.profile_facts(profile)).maximum:
                continue
            count = per_profile[profile.id]
            total += count
            for category in profile.categories:
                uncovered[category] += count
                systems[category].add(profile.system)
    return CoverageOut(
        uncovered=[
            CoverageItem(category=c, records=n, systems=sorted(systems[c]))
            for c, n in sorted(uncovered.items())
        ],
        records_without_rule=total,
    )


@dataclass(frozen=True, slots=True)
class ErasureSplit:
    erasable: list[uuid.UUID]
    # One entry per record retention keeps, with its grounds cited under the request's regime
    # (app/retention/citations.py).
    withheld: list[dict[str, Any]]
    # Withheld records that only a restriction keeps (no hold, no running minimum): erasable
    # once the restriction is lifted.
    only_restricted: list[uuid.UUID] = field(default_factory=list)

    @property
    def needs_person(self) -> list[str]:
        """Withheld records kept by no exemption (a contractual or policy minimum)."""
        return [
            w["record_id"] for w in self.withheld if any(g["needs_person"] for g in w["grounds"])
        ]


async def erasure_split(
    session: AsyncSession,
    record_ids: Sequence[uuid.UUID],
    now: datetime | None = None,
    regime: str = "gdpr",
) -> ErasureSplit:
    """Which of these records an erasure may take now, and why each of the others stays, in
    the terms of the request's regime."""
    now = now or utcnow()
    rows = (
        await session.execute(
            select(Record, RecordProfile)
            .join(RecordProfile, RecordProfile.id == Record.profile_id)
            .where(Record.id.in_(record_ids), Record.state != "erased")
        )
    ).all()
    hold_ids = await engine.holds_of(
        session,
        [(record.id, engine.profile_facts(profile)) for record, profile in rows if record.held],
    )
    explained = {
        record.id: engine.explain(profile.ranked_rules, record, hold_ids.get(record.id, []), now)
        for record, profile in rows
    }
    wanted_holds = {h for ids in hold_ids.values() for h in ids}
    wanted_rules = {
        o.rule_id
        for decision in explained.values()
        for o in decision.rules
        if o.kind == "minimum" and o.decisive
    }
    holds = {
        str(h.id): h
        for h in (
            await session.scalars(
                select(LegalHold).where(LegalHold.id.in_([uuid.UUID(i) for i in wanted_holds]))
            )
        ).all()
    }
    rules = {
        str(r.id): r
        for r in (
            await session.scalars(
                select(RetentionRule).where(
                    RetentionRule.id.in_([uuid.UUID(i) for i in wanted_rules])
                )
            )
        ).all()
    }
    erasable: list[uuid.UUID] = []
    withheld: list[dict[str, Any]] = []
    only_restricted: list[uuid.UUID] = []
    for record, _profile in rows:
        status = policy.status_at(
            record.held, record.keep_until, record.keep_indefinitely, record.delete_by, now
        )
        if status in ("eligible", "due"):
            erasable.append(record.id)
            continue
        grounds: list[dict[str, Any]] = []
        if record.state == "restricted":
            grounds.append(citations.ground("restricted", regime))
        for hold_id in hold_ids.get(record.id, []):
            hold = holds.get(hold_id)
            grounds.append(
                citations.ground(
                    "legal_hold", regime, hold_id=hold_id, reason=hold.reason if hold else None
                )
            )
        for outcome in explained[record.id].rules:
            if outcome.kind == "minimum" and outcome.decisive:
                rule = rules.get(outcome.rule_id)
                grounds.append(
                    citations.ground(
                        citations.minimum_ground(rule.source if rule else None),
                        regime,
                        rule_id=outcome.rule_id,
                        rule=rule.name if rule else None,
                        source=rule.source if rule else None,
                        citation=rule.citation if rule else None,
                        keep_until=outcome.ends_at.isoformat() if outcome.ends_at else None,
                    )
                )
        unrestricted = policy.status_at(
            bool(hold_ids.get(record.id)),
            record.keep_until,
            record.keep_indefinitely,
            record.delete_by,
            now,
        )
        if record.state == "restricted" and unrestricted in ("eligible", "due"):
            only_restricted.append(record.id)
        withheld.append(
            {
                "record_id": str(record.id),
                "system": record.system,
                "record_ref": record.record_ref,
                "status": status,
                "grounds": grounds,
            }
        )
    return ErasureSplit(erasable, withheld, only_restricted)
