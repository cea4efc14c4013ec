"""Retention answers for callers: checks, the due sweep, coverage."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import Principal
from app.core.db import utcnow
from app.core.errors import BadRequest
from app.core.pagination import decode_cursor, encode_cursor
from app.records import service as records
from app.records.models import Record, RecordProfile
from app.retention import engine, policy
from app.retention.schemas import (
    CoverageItem,
    CoverageOut,
    DuePage,
    DueRecord,
    EligibilityIn,
    EligibilityResult,
)


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
        for record, _profile in await session.execute(
            records.visible(principal).where(Record.id.in_(ids))
        ):
            by_id[record.id] = record
    if refs:
        for record, _profile in await session.execute(
            records.visible(principal).where(tuple_(Record.system, Record.record_ref).in_(refs))
        ):
            by_ref[(record.system, record.record_ref)] = record
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
            results.append(
                EligibilityResult(
                    index=index,
                    found=True,
                    system=found.system,
                    record_ref=found.record_ref,
                    decision=records.stored_decision(found, now),
                )
            )
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
    if principal.role == "system":
        if system is not None and system != principal.system_key:
            return DuePage(items=[])
        system = principal.system_key
    statement = select(
        Record.id, Record.system, Record.record_ref, Record.delete_by, Record.action
    ).where(
        Record.state == "active",
        ~Record.held,
        Record.delete_by.is_not(None),
        Record.delete_by <= now,
    )
    if system is not None:
        statement = statement.where(Record.system == system)
    if principal.role == "controller":
        statement = statement.where(Record.controller_id == principal.controller_id)
    if cursor is not None:
        after_ts, after_id = decode_cursor(cursor, 2)
        try:
            after = (datetime.fromisoformat(str(after_ts)), uuid.UUID(str(after_id)))
        except ValueError as exc:
            raise BadRequest("The cursor is not one this service issued") from exc
        statement = statement.where(tuple_(Record.delete_by, Record.id) > after)
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
    counts = select(Record.profile_id, func.count().label("n")).where(Record.state != "erased")
    if principal.role == "system":
        counts = counts.where(Record.system == principal.system_key)
    elif principal.role == "controller":
        counts = counts.where(Record.controller_id == principal.controller_id)
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
            facts = engine.profile_facts(profile)
            ranked = policy.rank_rules(
                rule for rule in rules.rules if policy.rule_applies(rule, _anchorless(facts))
            )
            if ranked.maximum:
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


def _anchorless(facts: engine.ProfileFacts) -> policy.RecordFacts:
    # Which rules apply depends on the profile alone; the dates here are never read.
    return policy.RecordFacts(
        categories=facts.categories,
        purposes=facts.purposes,
        controller_id=facts.controller_id,
        system=facts.system,
        region=facts.region,
        collected_at=datetime.min,
    )
