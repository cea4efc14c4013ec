"""Records deleted in their systems: they become tombstones that keep ids and dates only.
Holds win: a held record is never tombstoned."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record as audit
from app.auth.service import Principal
from app.core.db import utcnow
from app.core.errors import Forbidden
from app.records.models import Record, RecordIdentity
from app.retention import grounds


def require_writer(principal: Principal, system: str) -> None:
    if principal.role == "system" and principal.system_key != system:
        raise Forbidden("A system key writes records of its own system only")


async def mark_erased(
    session: AsyncSession, principal: Principal, system: str, record_refs: list[str]
) -> list[uuid.UUID]:
    """Systems report deletions: records become tombstones that keep ids and dates only.
    Holds win: when any named record is held, nothing is tombstoned (RecordsHeld), and the
    refusal is audited (ids only) before it is raised: the caller answers it, so it commits."""
    rows = (
        await session.execute(
            select(Record.id, Record.record_ref).where(
                Record.system == system,
                Record.record_ref.in_(set(record_refs)),
                Record.state != "erased",
            )
        )
    ).all()
    ids = [row.id for row in rows]
    held = await grounds.held_records(session, ids, lock=True)
    if held:
        out = {g["record_ref"]: g for g in await grounds.grounds_out(session, held)}
        refused = grounds.RecordsHeld(
            f"{len(held)} of these records are held (legal hold or restriction): "
            "none was marked erased",
            [{"index": i, **out[ref]} for i, ref in enumerate(record_refs) if ref in out],
            held,
        )
        details = grounds.audit_details(held)
        audit(
            session,
            principal,
            "records.erase_refused",
            "record_batch",
            details["records"][0],
            {"system": system, **details},
        )
        raise refused
    erased = await tombstone(session, ids)
    if erased:
        audit(
            session,
            principal,
            "records.erased",
            "record_batch",
            erased[0],
            {"system": system, "records": [str(i) for i in erased]},
        )
    return erased


async def tombstone(session: AsyncSession, ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Erased means gone: keep the record's id and dates, drop its identities and decision.
    A held record is never tombstoned, whatever the caller checked. Returns the ids erased."""
    if not ids:
        return []
    now = utcnow()
    erased = await session.execute(
        update(Record)
        .where(Record.id.in_(ids), Record.state != "erased", Record.held.is_(False))
        .values(
            state="erased",
            erased_at=now,
            updated_at=now,
            held=False,
            keep_until=None,
            keep_indefinitely=False,
            delete_by=None,
        )
        .returning(Record.id)
        .execution_options(synchronize_session=False)
    )
    done = list(erased.scalars())
    if done:
        await session.execute(delete(RecordIdentity).where(RecordIdentity.record_id.in_(done)))
    return done
