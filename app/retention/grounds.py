"""Why a record may not be deleted now that it is held: the legal holds on it and its
restriction. Read when a deletion is refused, so only for the held records it names."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import problem_response
from app.legal_holds.models import LegalHold
from app.records.models import Record, RecordProfile
from app.retention import engine
from app.retention.citations import ground


@dataclass(frozen=True, slots=True)
class HeldRecord:
    record_id: uuid.UUID
    system: str
    record_ref: str
    restricted: bool
    hold_ids: tuple[str, ...]


class RecordsHeld(Exception):
    """A held record was to be erased. Answered 409 with each record's grounds, not raised
    through the session: the refusal's audit event must be committed."""

    def __init__(
        self, detail: str, held_records: list[dict[str, Any]], held: Sequence[HeldRecord] = ()
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.held_records = held_records
        self.held = held


async def held_records(
    session: AsyncSession, record_ids: Sequence[uuid.UUID], *, lock: bool = False
) -> list[HeldRecord]:
    """The held ones among these records, with their holds. `lock` takes the rows' locks
    first (PostgreSQL): a hold being placed on them commits before this reads, or waits."""
    if not record_ids:
        return []
    statement = select(Record.id, Record.held).where(
        Record.id.in_(record_ids), Record.state != "erased"
    )
    if lock:
        statement = statement.order_by(Record.id).with_for_update()
    held_ids = [row.id for row in await session.execute(statement) if row.held]
    if not held_ids:
        return []
    rows = (
        await session.execute(
            select(Record.id, Record.system, Record.record_ref, Record.state, RecordProfile)
            .join(RecordProfile, RecordProfile.id == Record.profile_id)
            .where(Record.id.in_(held_ids))
            .order_by(Record.id)
        )
    ).all()
    holds = await engine.holds_of(
        session, [(row.id, engine.profile_facts(row.RecordProfile)) for row in rows]
    )
    return [
        HeldRecord(
            row.id,
            row.system,
            row.record_ref,
            row.state == "restricted",
            tuple(sorted(holds.get(row.id, []))),
        )
        for row in rows
    ]


async def grounds_out(
    session: AsyncSession, held: Sequence[HeldRecord], regime: str = "gdpr"
) -> list[dict[str, Any]]:
    """Each held record with its grounds, in the shape an erasure's withheld list uses, cited
    under `regime` (a request's regime; GDPR for a system's own deletion)."""
    wanted = {uuid.UUID(h) for record in held for h in record.hold_ids}
    reasons: dict[str, str] = {}
    if wanted:
        rows = await session.execute(
            select(LegalHold.id, LegalHold.reason).where(LegalHold.id.in_(wanted))
        )
        reasons = {str(hold_id): reason for hold_id, reason in rows}
    out = []
    for record in held:
        grounds = [ground("restricted", regime)] if record.restricted else []
        grounds.extend(
            ground("legal_hold", regime, hold_id=hold_id, reason=reasons.get(hold_id))
            for hold_id in record.hold_ids
        )
        out.append(
            {
                "record_id": str(record.record_id),
                "system": record.system,
                "record_ref": record.record_ref,
                "grounds": grounds,
            }
        )
    return out


def audit_details(held: Sequence[HeldRecord]) -> dict[str, Any]:
    """Ids only: which records were refused and which holds (or restrictions) held them."""
    return {
        "records": [str(r.record_id) for r in held],
        "holds": sorted({h for r in held for h in r.hold_ids}),
        "restricted": [str(r.record_id) for r in held if r.restricted],
    }


def problem(exc: RecordsHeld, request: Request) -> Response:
    """The 409 a refused deletion answers: each held record with its grounds."""
    return problem_response(
        409,
        "record-held",
        "Record held",
        exc.detail,
        request=request,
        held_records=exc.held_records,
    )
