"""Reading records: as a key sees them, with their identities' digests and the retention
decision stored on each."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Select, Text, bindparam, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from app.auth.service import Principal
from app.core.db import utcnow
from app.core.errors import NotFound
from app.core.hot_read import ReadScope, unnested_strings
from app.core.identity import parse_label
from app.core.pagination import cursor_uuid, decode_cursor, encode_cursor
from app.records.models import Record, RecordIdentity, RecordProfile, visible
from app.records.schemas import IdentityDigest, RecordOut, RecordPage
from app.retention import engine
from app.retention.answer import name_rules, names_read, put_names, stored_decision


async def identities_of(
    session: AsyncSession, record_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[IdentityDigest]]:
    found: dict[uuid.UUID, list[IdentityDigest]] = {rid: [] for rid in record_ids}
    if record_ids:
        rows = await session.execute(
            select(
                RecordIdentity.record_id,
                RecordIdentity.identity_type,
                RecordIdentity.digest,
                RecordIdentity.key_id,
            ).where(RecordIdentity.record_id.in_(record_ids))
        )
        for record_id, identity_type, digest, label in rows:
            if not parse_label(label)[2]:
                found[record_id].append(IdentityDigest(type=identity_type, digest=digest))
    return found


class identity_rows(FunctionElement[str]):
    """A record's stored identities as JSON text `[[type, digest, label], ...]`: a subquery,
    so that reading records reads their identities in the same statement (the primary key's
    prefix is the record id: one index range per record)."""

    type = Text()
    name = "identity_rows"
    inherit_cache = True


_IDENTITIES = RecordIdentity.__tablename__


@compiles(identity_rows)
def _identity_rows(element: identity_rows, compiler: Any, **kw: Any) -> str:
    record_id = compiler.process(element.clauses, **kw)
    if compiler.dialect.name == "postgresql":
        rows, text = "json_agg(json_build_array(i.identity_type, i.digest, i.key_id))", "::text"
    else:
        rows, text = "json_group_array(json_array(i.identity_type, i.digest, i.key_id))", ""
    # Only a compiled column and the table's own name are interpolated: no values.
    return f"(SELECT {rows}{text} FROM {_IDENTITIES} AS i WHERE i.record_id = {record_id})"  # noqa: S608


def identities_read(text: str | None) -> list[IdentityDigest]:
    """What identity_rows read, as a record shows it: companion hashes left out, in the order
    of the identities' primary key (type, then digest)."""
    rows = sorted((t, d) for t, d, label in orjson.loads(text or "[]") if not parse_label(label)[2])
    return [IdentityDigest(type=t, digest=d) for t, d in rows]


# A record with its profile, its identities and its rules' names, in one row: for reads of
# many records by id (the subject lookup). Columns keep the names record_out reads.
RECORD_COLUMNS = select(
    Record.id,
    Record.system,
    Record.record_ref,
    Record.controller_id,
    Record.collected_at,
    Record.last_activity_at,
    Record.events,
    Record.state,
    Record.created_at,
    Record.updated_at,
    Record.erased_at,
    Record.held,
    Record.keep_until,
    Record.keep_indefinitely,
    Record.delete_by,
    Record.action,
    RecordProfile.region,
    RecordProfile.categories,
    RecordProfile.purposes,
    RecordProfile.ranked_rules,
    identity_rows(Record.id).label("identity_rows"),
).join(RecordProfile, RecordProfile.id == Record.profile_id)


async def records_out_of_rows(reads: ReadScope, rows: Sequence[Any]) -> list[RecordOut]:
    """RecordOut for rows of RECORD_COLUMNS (plus `rule_names`); reads only the holds of held
    records, which a row does not carry (in a session opened for them alone)."""
    now = utcnow()
    held = [(row.id, engine.profile_facts(row)) for row in rows if row.held]
    holds = await engine.holds_of(await reads.session(), held) if held else {}
    out = []
    for row in rows:
        record = record_out(
            row, row, identities_read(row.identity_rows), holds.get(row.id, []), now
        )
        put_names([record.retention], names_read(row.rule_names))
        out.append(record)
    return out


def record_out(
    record: Any,
    profile: Any,
    identities: list[IdentityDigest],
    hold_ids: list[str],
    now: datetime,
) -> RecordOut:
    return RecordOut(
        id=record.id,
        system=record.system,
        record_ref=record.record_ref,
        controller_id=record.controller_id,
        categories=list(profile.categories),
        purposes=list(profile.purposes),
        region=profile.region,
        identities=identities,
        collected_at=record.collected_at,
        last_activity_at=record.last_activity_at,
        events=engine.parse_events(record.events),
        state=record.state,  # type: ignore[arg-type]
        created_at=record.created_at,
        updated_at=record.updated_at,
        erased_at=record.erased_at,
        retention=stored_decision(record, profile.ranked_rules, hold_ids, now),
    )


async def records_out(session: AsyncSession, rows: Sequence[Any]) -> list[RecordOut]:
    now = utcnow()
    identities = await identities_of(session, [row[0].id for row in rows])
    holds = await engine.holds_of(
        session, [(rec.id, engine.profile_facts(prof)) for rec, prof in rows if rec.held]
    )
    out = [
        record_out(rec, prof, identities[rec.id], holds.get(rec.id, []), now) for rec, prof in rows
    ]
    await name_rules(session, [record.retention for record in out])
    return out


async def get_visible(
    session: AsyncSession, principal: Principal, record_id: uuid.UUID
) -> tuple[Record, RecordProfile]:
    row = (await session.execute(visible(principal).where(Record.id == record_id))).first()
    if row is None:
        raise NotFound("No record with this id")
    return row[0], row[1]


def carrying(dialect: str) -> Any:
    """The records carrying the digests bound as `digests`, as a FROM item with a `record_id`
    column, for a statement built once that reads the records by primary key joined to it.

    On PostgreSQL every plan, custom or generic, statistics or none, probes the two indexes:
    - each digest probes the identity index inside a LATERAL subquery that OFFSET 0 keeps
      from being merged into the join, so it runs once per digest, by index. As a plain join
      to unnest(array), the generic plan hashed the whole identity table when the tables had
      never been analyzed (PostgreSQL then planned the statement afresh at each call to keep
      the custom plan);
    - the ids found go into an array (one value), and the records are joined to its
      elements, a primary-key probe each. `records.id IN (subquery) ORDER BY id LIMIT n`
      walked the records' primary key across the whole table without statistics (1 s a
      lookup at 1M records), and a join to the subquery itself let the planner hash the
      records table whole."""
    if dialect != "postgresql":
        carried = RecordIdentity.digest.in_(bindparam("digests", expanding=True))
        return select(RecordIdentity.record_id).distinct().where(carried).subquery()
    wanted = unnested_strings("digests")
    probe = (
        select(RecordIdentity.record_id)
        .where(RecordIdentity.digest == wanted.c.value)
        .offset(0)
        .lateral("probe")
    )
    ids = select(probe.c.record_id).select_from(wanted).join(probe, true()).distinct()
    found = select(func.array_agg(ids.subquery().c.record_id)).scalar_subquery()
    return func.unnest(found).table_valued("record_id").render_derived()


async def page_rows(
    session: AsyncSession, statement: Select[Record, RecordProfile], limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """Keyset page of (record, profile) rows by record id."""
    if cursor is not None:
        (after,) = decode_cursor(cursor, cursor_uuid)
        statement = statement.where(Record.id > after)
    rows = list((await session.execute(statement.order_by(Record.id).limit(limit + 1))).all())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor([rows[-1][0].id])


async def get_record(
    session: AsyncSession, principal: Principal, record_id: uuid.UUID
) -> RecordOut:
    row = await get_visible(session, principal, record_id)
    (out,) = await records_out(session, [row])
    return out


async def list_records(
    session: AsyncSession,
    principal: Principal,
    limit: int,
    cursor: str | None,
    *,
    system: str | None = None,
    record_ref: str | None = None,
    controller_id: uuid.UUID | None = None,
    state: str | None = None,
) -> RecordPage:
    statement = visible(principal)
    if system is not None:
        statement = statement.where(Record.system == system)
    if record_ref is not None:
        statement = statement.where(Record.record_ref == record_ref)
    if controller_id is not None:
        statement = statement.where(Record.controller_id == controller_id)
    if state is not None:
        statement = statement.where(Record.state == state)
    rows, next_cursor = await page_rows(session, statement, limit, cursor)
    return RecordPage(items=await records_out(session, rows), next_cursor=next_cursor)
