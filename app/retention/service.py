"""Retention answers for callers: checks, the due sweep, coverage."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import Principal
from app.core.db import utcnow
from app.core.errors import BadRequest
from app.core.pagination import decode_cursor, encode_cursor
from app.legal_holds.models import LegalHold
from app.records import service as records
from app.records.models import DUE_PREDICATE, Record, RecordProfile
from app.retention import engine, policy
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
    ).where(text(DUE_PREDICATE), Record.delete_by <= now)
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


@dataclass(frozen=True, slots=True)
class ErasureSplit:
    erasable: list[uuid.UUID]
    # One entry per record retention keeps, with its legal ground (GDPR Art. 17(3)).
    withheld: list[dict[str, Any]]


async def erasure_split(
    session: AsyncSession, record_ids: Sequence[uuid.UUID], now: datetime | None = None
) -> ErasureSplit:
    """Which of these records an erasure may take now, and why each of the others stays."""
    now = now or utcnow()
    rows = (
        await session.execute(
            select(
                Record.id,
                Record.system,
                Record.record_ref,
                Record.state,
                Record.held,
                Record.keep_until,
                Record.keep_indefinitely,
                Record.delete_by,
                Record.retention,
            ).where(Record.id.in_(record_ids), Record.state != "erased")
        )
    ).all()
    hold_ids = {h for row in rows for h in (row.retention or {}).get("holds", [])}
    rule_ids = {
        r["id"]
        for row in rows
        for r in (row.retention or {}).get("rules", [])
        if r["kind"] == "minimum" and r["decisive"]
    }
    holds = (
        {
            str(h.id): h
            for h in (
                await session.scalars(
                    select(LegalHold).where(LegalHold.id.in_([uuid.UUID(i) for i in hold_ids]))
                )
            ).all()
        }
        if hold_ids
        else {}
    )
    rules = (
        {
            str(r.id): r
            for r in (
                await session.scalars(
                    select(RetentionRule).where(
                        RetentionRule.id.in_([uuid.UUID(i) for i in rule_ids])
                    )
                )
            ).all()
        }
        if rule_ids
        else {}
    )
    erasable: list[uuid.UUID] = []
    withheld: list[dict[str, Any]] = []
    for row in rows:
        status = policy.status_at(
            row.held, row.keep_until, row.keep_indefinitely, row.delete_by, now
        )
        if status in ("eligible", "due"):
            erasable.append(row.id)
            continue
        grounds: list[dict[str, Any]] = []
        if row.state == "restricted":
            grounds.append({"ground": "restricted", "basis": "GDPR Art. 18"})
        for hold_id in (row.retention or {}).get("holds", []):
            hold = holds.get(hold_id)
            grounds.append(
                {
                    "ground": "legal_hold",
                    "basis": "GDPR Art. 17(3)(e)",
                    "hold_id": hold_id,
                    "reason": hold.reason if hold else None,
                }
            )
        for outcome in (row.retention or {}).get("rules", []):
            if outcome["kind"] == "minimum" and outcome["decisive"]:
                rule = rules.get(outcome["id"])
                grounds.append(
                    {
                        "ground": "retention_minimum",
                        "basis": "GDPR Art. 17(3)(b)",
                        "rule_id": outcome["id"],
                        "rule": rule.name if rule else None,
                        "source": rule.source if rule else None,
                        "citation": rule.citation if rule else None,
                        "keep_until": outcome["ends_at"],
                    }
                )
        withheld.append(
            {
                "record_id": str(row.id),
                "system": row.system,
                "record_ref": row.record_ref,
                "status": status,
                "grounds": grounds,
            }
        )
    return ErasureSplit(erasable, withheld)
