"""A batch's rows written in a few statements whatever its size: new records, updated
records, and the identity hashes of both.

On PostgreSQL the values go to the driver as they are, never through the ORM's type layer
(which bound every value of a multi-row VALUES or executemany, after which PostgreSQL ran one
statement per row). Records travel as one array per column, unpacked by `unnest`
(`INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING`): one round trip and one plan per
chunk, and a concurrent writer of the same ref is skipped, not an error. Identity hashes,
four or more rows a record and never in conflict (a record's old ones are deleted first),
are copied in with COPY, the cheapest way in at both ends. SQLite takes the same rows as Core
executemany statements. Rows go in chunks, so a statement's size is bounded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import asyncpg
from sqlalchemy import JSON, Boolean, String, Table, Uuid, bindparam, delete, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import UTCDateTime, any_of, json_text
from app.core.hot_read import run_deferred
from app.records.models import Record, RecordIdentity
from app.records.profiles import insert_for

records_table: Table = Record.__table__  # type: ignore[assignment]
identities_table: Table = RecordIdentity.__table__  # type: ignore[assignment]

# Rows per statement: a chunk's arrays stay a few hundred kilobytes.
RECORD_CHUNK = 1000
IDENTITY_CHUNK = 5000

# Every column of a record: a new record's row has them all, an update writes all but
# its id and created_at.
RECORD_COLUMNS = tuple(column.name for column in records_table.c)
UPDATED_COLUMNS = tuple(name for name in RECORD_COLUMNS if name not in ("id", "created_at"))
IDENTITY_COLUMNS = tuple(column.name for column in identities_table.c)


def _is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _chunks(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _array_type(table: Table, name: str) -> str:
    """The PostgreSQL array a column's values travel in. Strings go as varchar[] (a cast
    to varchar(n)[] would cut a longer value to fit; the column refuses it instead), JSON
    as the text the engine would write, turned into json by the statement."""
    column_type = table.c[name].type
    if isinstance(column_type, String | JSON):
        return "varchar[]"
    if isinstance(column_type, Uuid):
        return "uuid[]"
    if isinstance(column_type, UTCDateTime):
        return "timestamptz[]"
    if isinstance(column_type, Boolean):
        return "boolean[]"
    raise TypeError(f"no array type for {table.name}.{name}")  # pragma: no cover


def _unnest(table: Table, names: Sequence[str]) -> str:
    """`unnest($1::uuid[], ...) AS v(id, ...)` over these columns, with the select list
    that gives each its column's type."""
    arrays = ", ".join(f"${n}::{_array_type(table, c)}" for n, c in enumerate(names, 1))
    return f"unnest({arrays}) AS v({', '.join(names)})"


def _value(table: Table, name: str) -> str:
    return f"v.{name}::json" if isinstance(table.c[name].type, JSON) else f"v.{name}"


def _insert(table: Table, names: Sequence[str], tail: str = "") -> str:
    """INSERT ... SELECT over the arrays (the names are the table's own columns)."""
    columns = ", ".join(names)
    values = ", ".join(_value(table, name) for name in names)
    source = _unnest(table, names)
    return f"INSERT INTO {table.name} ({columns}) SELECT {values} FROM {source}{tail}"  # noqa: S608


def _update(table: Table, names: Sequence[str]) -> str:
    """UPDATE ... FROM the arrays, matched by id (the names are the table's own columns)."""
    assignments = ", ".join(f"{name} = {_value(table, name)}" for name in names)
    source = _unnest(table, ("id", *names))
    return f"UPDATE {table.name} SET {assignments} FROM {source} WHERE {table.name}.id = v.id"  # noqa: S608


_INSERT_RECORDS = _insert(
    records_table,
    RECORD_COLUMNS,
    " ON CONFLICT (system, record_ref) DO NOTHING RETURNING id",
)
# Locked first, in (system, record_ref) order like every write of a batch: an UPDATE joined
# to the arrays would lock in whatever order its plan visits the rows.
_LOCK_RECORDS = (
    "SELECT records.id FROM records JOIN unnest($1::uuid[]) AS v(id) ON records.id = v.id "
    "ORDER BY records.system, records.record_ref FOR UPDATE OF records"
)
_UPDATE_RECORDS = _update(records_table, UPDATED_COLUMNS)


async def _execute(session: AsyncSession, statement: str, arrays: tuple[list[Any], ...]) -> Any:
    connection = await session.connection()
    # One tuple: one execution with positional parameters, passed to the driver as they are.
    return await connection.exec_driver_sql(statement, arrays)


def _arrays(
    table: Table, rows: Sequence[dict[str, Any]], names: Sequence[str]
) -> tuple[list[Any], ...]:
    """One list per column, JSON values as the text the engine would write."""
    return tuple(
        [json_text(row[name]) for row in rows]
        if isinstance(table.c[name].type, JSON)
        else [row[name] for row in rows]
        for name in names
    )


async def insert_records(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
    """Insert new records (rows with every RECORD_COLUMNS key); a (system, record_ref) that
    exists already is skipped. Returns the ids inserted."""
    inserted: set[uuid.UUID] = set()
    for chunk in _chunks(rows, RECORD_CHUNK):
        if _is_postgres(session):
            result = await _execute(
                session, _INSERT_RECORDS, _arrays(records_table, chunk, RECORD_COLUMNS)
            )
        else:
            result = await session.execute(
                # A Core insert on the table: the ORM's bulk path builds every row again.
                insert_for(session)(records_table)
                .on_conflict_do_nothing(index_elements=["system", "record_ref"])
                .returning(records_table.c.id),
                list(chunk),
            )
        inserted.update(result.scalars())
    return inserted


async def update_records(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Overwrite existing records by id (rows with every RECORD_COLUMNS key but
    created_at), and drop their identity hashes: the caller inserts the new ones."""
    for chunk in _chunks(rows, RECORD_CHUNK):
        ids = [row["id"] for row in chunk]
        if _is_postgres(session):
            await _execute(session, _LOCK_RECORDS, (ids,))
            await _execute(
                session, _UPDATE_RECORDS, _arrays(records_table, chunk, ("id", *UPDATED_COLUMNS))
            )
        else:
            await session.execute(
                update(records_table).where(records_table.c.id == bindparam("b_id")),
                [
                    {"b_id": row["id"], **{name: row[name] for name in UPDATED_COLUMNS}}
                    for row in chunk
                ],
            )
        await session.execute(
            delete(RecordIdentity).where(any_of(session, RecordIdentity.record_id, ids))
        )


async def _copy(
    session: AsyncSession, table: Table, names: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """COPY rows into a table on the session's connection, inside its transaction."""
    connection = await session.connection()
    await run_deferred(connection)  # what the transaction holds back goes first
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    try:
        await driver.copy_records_to_table(table.name, records=rows, columns=list(names))
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # Raised like a statement's error: a lost deadlock re-runs the request, a database
        # gone answers 503, and the import sets a refused batch apart.
        raise DBAPIError(f"COPY {table.name}", None, exc, hide_parameters=True) from exc


async def insert_identities(session: AsyncSession, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert identity hash rows, each (record_id, identity_type, digest, key_id)."""
    for chunk in _chunks(rows, IDENTITY_CHUNK):
        if _is_postgres(session):
            await _copy(session, identities_table, IDENTITY_COLUMNS, chunk)
        else:
            await session.execute(
                identities_table.insert(),
                [dict(zip(IDENTITY_COLUMNS, row, strict=True)) for row in chunk],
            )
