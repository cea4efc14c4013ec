"""Record profiles: records that share categories, purposes, controller, system and region
share one, found by its fingerprint and created with the retention rules that apply to it."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.ids import new_id
from app.records.models import RecordProfile, RecordProfileCategory, RecordProfilePurpose
from app.retention import engine


def insert_for(session: AsyncSession) -> Any:
    """The dialect's INSERT, for its ON CONFLICT clause."""
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def fingerprint(
    categories: Iterable[str],
    purposes: Iterable[str],
    controller_id: uuid.UUID,
    system: str,
    region: str | None,
) -> str:
    canonical = orjson.dumps(
        [sorted(set(categories)), sorted(set(purposes)), str(controller_id), system, region]
    )
    return hashlib.sha256(canonical).hexdigest()


def profile_facts(
    categories: Iterable[str],
    purposes: Iterable[str],
    controller_id: uuid.UUID,
    system: str,
    region: str | None,
) -> engine.ProfileFacts:
    """What a profile for these fields holds (categories and purposes once each, sorted)."""
    return engine.ProfileFacts(
        controller_id=controller_id,
        system=system,
        region=region,
        categories=tuple(sorted(set(categories))),
        purposes=tuple(sorted(set(purposes))),
    )


async def resolve_profiles(
    session: AsyncSession, wanted: dict[str, engine.ProfileFacts], rules: engine.RuleBook
) -> dict[str, Any]:
    """Profile rows by fingerprint, creating the missing ones (concurrent creators agree)
    with the retention rules that apply to them, ranked."""
    found = {
        row.fingerprint: row
        for row in (
            await session.execute(
                select(RecordProfile).where(RecordProfile.fingerprint.in_(wanted))
            )
        ).scalars()
    }
    # Sorted: concurrent batches take the unique-index locks of new profiles in one order.
    missing = sorted(fp for fp in wanted if fp not in found)
    if missing:
        insert = insert_for(session)
        rows = []
        for fp in missing:
            facts = wanted[fp]
            row = {
                "id": new_id(),
                "fingerprint": fp,
                "controller_id": facts.controller_id,
                "system": facts.system,
                "region": facts.region,
                "categories": list(facts.categories),
                "purposes": list(facts.purposes),
            }
            ranked = rules.ranked(facts)
            rows.append({**row, "ranked_rules": engine.encode_ranked(ranked)})
        await session.execute(
            insert(RecordProfile).on_conflict_do_nothing(index_elements=["fingerprint"]), rows
        )
        created = {
            row.fingerprint: row
            for row in (
                await session.execute(
                    select(RecordProfile).where(RecordProfile.fingerprint.in_(missing))
                )
            ).scalars()
        }
        in_order = [created[fp] for fp in missing if fp in created]
        category_rows = [
            {"profile_id": p.id, "category": c} for p in in_order for c in p.categories
        ]
        purpose_rows = [{"profile_id": p.id, "purpose": c} for p in in_order for c in p.purposes]
        if category_rows:
            await session.execute(
                insert(RecordProfileCategory).on_conflict_do_nothing(), category_rows
            )
        if purpose_rows:
            await session.execute(
                insert(RecordProfilePurpose).on_conflict_do_nothing(), purpose_rows
            )
        found.update(created)
    return found
