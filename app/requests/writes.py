"""What filing writes, in as few statements as the database allows: the request with its
identities, then the scopes it opens with the records each resolved to, the systems' tasks
and the records each task covers. On PostgreSQL each of the two is one statement (a table's
rows as arrays, unnested, each table in its own WITH); elsewhere one statement a table.

The request and its scopes stay ORM objects (their status listeners, the services that move
them on): written by these statements, then kept in the session as though flushed. A request
that waits for its code, filed by a caller that commits next, is written from its row alone:
nothing moves it on in that transaction, and its object (built, its row read off it, kept in
the session) was about a tenth of such a filing's CPU."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    Insert,
    String,
    Table,
    Text,
    bindparam,
    cast,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.audit.service import WRITTEN_COLUMNS, take_sealed
from app.core.db import keep_written, new_row
from app.core.hot_read import HotWrite
from app.core.identity import BlindIndex
from app.requests.fresh import note_fresh
from app.requests.models import RequestIdentity, RequestScope, ScopeRecord, SubjectRequest
from app.tasks.models import Task, TaskRecord

_REQUESTS: Table = SubjectRequest.__table__  # type: ignore[assignment]
_IDENTITIES: Table = RequestIdentity.__table__  # type: ignore[assignment]
_SCOPES: Table = RequestScope.__table__  # type: ignore[assignment]
_SCOPE_RECORDS: Table = ScopeRecord.__table__  # type: ignore[assignment]
_TASKS: Table = Task.__table__  # type: ignore[assignment]
_TASK_RECORDS: Table = TaskRecord.__table__  # type: ignore[assignment]
_EVENTS: Table = AuditEvent.__table__  # type: ignore[assignment]


def _values(table: Table, prefix: str = "") -> Insert:
    """INSERT INTO table VALUES (one bound value a column). A JSON column left None is SQL
    NULL, as a flush leaves a JSON attribute never set (a plain Core insert would write the
    JSON text `null`)."""
    return insert(table).values(
        {
            column.key: bindparam(
                prefix + column.key,
                type_=JSON(none_as_null=True) if isinstance(column.type, JSON) else column.type,
            )
            for column in table.columns
        }
    )


def _unnested(table: Table, prefix: str, columns: tuple[str, ...] | None = None) -> Insert:
    """INSERT INTO table SELECT * FROM unnest(one array a column): every column, or those
    named (the others take their defaults)."""
    arrays = {
        column.key: bindparam(f"{prefix}_{column.key}", type_=ARRAY(_item_type(column)))
        for column in table.columns
        if columns is None or column.key in columns
    }
    unnested = func.unnest(*arrays.values()).table_valued(*arrays).render_derived()
    return insert(table).from_select(
        list(arrays),
        select(
            *(
                cast(unnested.c[key], JSON)
                if isinstance(table.c[key].type, JSON)
                else unnested.c[key]
                for key in arrays
            )
        ),
    )


def _item_type(column: Any) -> Any:
    if isinstance(column.type, JSON):
        return Text()  # as text, cast back to JSON in the statement
    if isinstance(column.type, String):
        return String()  # VARCHAR[]: a cast to VARCHAR(n)[] would cut longer values to fit
    return column.type


def _arrays(
    table: Table, prefix: str, rows: list[dict[str, Any]], columns: tuple[str, ...] | None = None
) -> dict[str, list[Any]]:
    arrays = {}
    for column in table.columns:
        if columns is not None and column.key not in columns:
            continue
        values = [row.get(column.key) for row in rows]
        if isinstance(column.type, JSON):
            # As the engine's JSON serializer writes them (orjson); None stays SQL NULL.
            values = [None if v is None else orjson.dumps(v).decode() for v in values]
        arrays[f"{prefix}_{column.key}"] = values
    return arrays


# PostgreSQL: each statement also writes the audit events the transaction queued so far
# (audit.take_sealed), a round trip less than writing them at commit. Both run straight on
# the driver (core.hot_read.HotWrite).
_EVENTS_WRITTEN = _unnested(_EVENTS, "ae", WRITTEN_COLUMNS).cte("events_written")
# PostgreSQL: the request and its identities in one statement.
_REQUEST_AND_IDENTITIES = HotWrite(
    _unnested(_IDENTITIES, "i").add_cte(
        _values(_REQUESTS, "r_").cte("request_written"), _EVENTS_WRITTEN
    )
)
# PostgreSQL: the opened scopes, their records, the tasks and the tasks' records.
_WORK = HotWrite(
    _unnested(_TASK_RECORDS, "tr").add_cte(
        _unnested(_SCOPES, "s").cte("scopes_written"),
        _unnested(_SCOPE_RECORDS, "sr").cte("scope_records_written"),
        _unnested(_TASKS, "t").cte("tasks_written"),
        _EVENTS_WRITTEN,
    )
)


def _events(session: AsyncSession) -> dict[str, list[Any]]:
    return _arrays(_EVENTS, "ae", take_sealed(session), WRITTEN_COLUMNS)


_ONE_ROW = {table.name: _values(table) for table in (_REQUESTS, _SCOPES)}


class WrittenRequest(SimpleNamespace):
    """A request's row as `write_request_row` wrote it, read by attribute as its ORM object
    is read (the filing's answer)."""


async def write_request(
    session: AsyncSession, request: SubjectRequest, digests: list[BlindIndex]
) -> None:
    """Write a new request (pending in the session, or not yet in it) and its identities,
    and keep it in the session as written."""
    if request in session:
        session.expunge(request)  # nothing of it was flushed: this statement writes it
    await write_request_row(session, new_row(request), digests)
    keep_written(session, request)


async def write_request_row(
    session: AsyncSession,
    row: dict[str, Any],
    digests: list[BlindIndex],
    *,
    commit_next: bool = False,
) -> None:
    """Write a new request's row (`db.new_row` or `db.row_of`) and its identities, with no
    object in the session: for a request nothing changes before the commit. `commit_next`:
    the caller commits next, catching no error on the way, so the write may wait for the
    commit."""
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        params = request_params(row, digests)
        params |= _events(session)
        if commit_next:
            # Held back to the transaction's next statement or its commit: a filing that
            # waits for its code has no other, and then needs no BEGIN and COMMIT.
            await _REQUEST_AND_IDENTITIES.defer(connection, params)
        else:
            await _REQUEST_AND_IDENTITIES.execute(connection, params)
    else:
        await connection.execute(_ONE_ROW[_REQUESTS.name], row)
        await connection.execute(insert(_IDENTITIES), _identity_rows(row["id"], digests))
    note_fresh(session, row["id"])


def request_params(row: dict[str, Any], digests: list[BlindIndex]) -> dict[str, Any]:
    """PostgreSQL: the request statement's parameters but the audit events' (the request's
    row and its identities)."""
    params = {f"r_{key}": value for key, value in row.items()}
    return params | _arrays(_IDENTITIES, "i", _identity_rows(row["id"], digests))


def _identity_rows(request_id: uuid.UUID, digests: list[BlindIndex]) -> list[dict[str, Any]]:
    return [
        {
            "request_id": request_id,
            "identity_type": str(d.type),
            "digest": d.digest,
            "key_id": d.key_id,
        }
        for d in digests
    ]


@dataclass(frozen=True, slots=True)
class NewTask:
    id: uuid.UUID
    scope_id: uuid.UUID
    system: str
    action: str
    records: int
    status: str = "pending"


@dataclass(frozen=True, slots=True)
class OpenedScope:
    """A scope opened in this transaction: how many records it resolved to, its new tasks."""

    scope: RequestScope
    records: int
    tasks: list[NewTask]


@dataclass
class NewWork:
    """What the scopes opened in this transaction add, until `write` writes it. Scopes added
    here are not in the session until then: their services change them as they run, and the
    row they get is the one they end with."""

    request_id: uuid.UUID
    scopes: list[RequestScope] = field(default_factory=list)
    scope_records: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[NewTask] = field(default_factory=list)
    _task_rows: list[dict[str, Any]] = field(default_factory=list)
    task_records: list[dict[str, Any]] = field(default_factory=list)

    def add_scope(self, scope: RequestScope, record_ids: list[uuid.UUID]) -> None:
        self.scopes.append(scope)
        self.add_scope_records(scope.id, record_ids)

    def add_scope_records(self, scope_id: uuid.UUID, record_ids: list[uuid.UUID]) -> None:
        self.scope_records.extend({"scope_id": scope_id, "record_id": r} for r in record_ids)

    def add_task(
        self,
        task_id: uuid.UUID,
        scope_id: uuid.UUID,
        system: str,
        action: str,
        records: list[Any],
        details: dict[str, Any],
        now: datetime,
    ) -> None:
        """A pending task for these records (rows with `id` and `record_ref`)."""
        self.tasks.append(NewTask(task_id, scope_id, system, action, len(records)))
        self._task_rows.append(
            {
                "id": task_id,
                "request_id": self.request_id,
                "scope_id": scope_id,
                "system": system,
                "action": action,
                "status": "pending",
                "record_ids": [str(r.id) for r in records],
                "record_refs": [r.record_ref for r in records],
                "details": details,
                "attempts": 0,
                "created_at": now,
            }
        )
        self.task_records.extend({"task_id": task_id, "record_id": r.id} for r in records)

    def _tables(self) -> tuple[tuple[Table, str, list[dict[str, Any]]], ...]:
        return (
            (_SCOPES, "s", [new_row(scope) for scope in self.scopes]),
            (_SCOPE_RECORDS, "sr", self.scope_records),
            (_TASKS, "t", self._task_rows),
            (_TASK_RECORDS, "tr", self.task_records),
        )

    def params(self) -> dict[str, list[Any]]:
        """PostgreSQL: the work statement's parameters but the audit events' (what was added
        since the last write, a column an array)."""
        return _work_params(self._tables())

    async def write(self, session: AsyncSession) -> None:
        """Write what was added since the last write, and keep its scopes in the session."""
        tables = self._tables()
        if any(rows for _table, _prefix, rows in tables):
            connection = await session.connection()  # Core: plain rows, no ORM objects
            if connection.dialect.name == "postgresql":
                await _WORK.execute(connection, _work_params(tables) | _events(session))
            else:
                for table, _prefix, rows in tables:
                    if rows:
                        await connection.execute(_ONE_ROW.get(table.name, insert(table)), rows)
        for scope in self.scopes:
            keep_written(session, scope)
        self.scopes, self.scope_records, self._task_rows, self.task_records = [], [], [], []


def _work_params(tables: tuple[tuple[Table, str, list[dict[str, Any]]], ...]) -> dict[str, Any]:
    params: dict[str, list[Any]] = {}
    for table, prefix, rows in tables:
        params |= _arrays(table, prefix, rows)
    return params
