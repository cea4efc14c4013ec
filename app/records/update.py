"""Changing a record (PATCH): its activity, events, categories or purposes, with its retention
decision recomputed in the same transaction."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record as audit
from app.auth.service import Principal
from app.core.db import utcnow
from app.core.errors import Conflict, Unprocessable
from app.records.models import RecordIdentity
from app.records.profiles import fingerprint, profile_facts, resolve_profiles
from app.records.queries import get_visible, records_out
from app.records.references import missing_reference
from app.records.schemas import RecordOut, RecordPatch
from app.retention import engine


async def _digests_of_record(session: AsyncSession, record_id: uuid.UUID) -> frozenset[str]:
    rows = await session.scalars(
        select(RecordIdentity.digest).where(RecordIdentity.record_id == record_id)
    )
    return frozenset(rows.all())


async def update_record(
    session: AsyncSession, principal: Principal, record_id: uuid.UUID, body: RecordPatch
) -> RecordOut:
    """Apply a PATCH to a record the key sees, recompute its retention decision, audit it."""
    record, profile = await get_visible(session, principal, record_id)
    if record.state == "erased":
        raise Conflict("An erased record cannot change")
    now = utcnow()
    rules = await engine.load_rulebook(session)
    changes = body.model_dump(exclude_unset=True)
    if "last_activity_at" in changes:
        record.last_activity_at = body.last_activity_at
    if body.events:
        record.events = {
            **(record.events or {}),
            **{name: engine.event_text(ts) for name, ts in body.events.items()},
        }
    if body.categories is not None or body.purposes is not None:
        categories = body.categories if body.categories is not None else profile.categories
        purposes = body.purposes if body.purposes is not None else profile.purposes
        missing = await missing_reference(
            session, record.system, record.controller_id, categories, purposes
        )
        if missing is not None:
            raise Unprocessable(missing.detail, loc=["body", *missing.loc])
        key = fingerprint(categories, purposes, record.controller_id, record.system, profile.region)
        facts = profile_facts(
            categories, purposes, record.controller_id, record.system, profile.region
        )
        profile = (await resolve_profiles(session, {key: facts}, rules))[key]
        record.profile_id = profile.id
    holds = await engine.load_holdbook(session)
    dates = engine.RecordDates(
        id=record.id,
        collected_at=record.collected_at,
        last_activity_at=record.last_activity_at,
        events=engine.parse_events(record.events),
        restricted=record.state == "restricted",
        digests=await _digests_of_record(session, record.id),
    )
    decision = engine.decide(rules, holds, engine.profile_facts(profile), dates, now)
    for column, value in engine.stored_columns(decision).items():
        setattr(record, column, value)
    record.updated_at = now
    await session.flush()
    audit(session, principal, "record.updated", "record", record.id, {"fields": sorted(changes)})
    (out,) = await records_out(session, [(record, profile)])
    return out
