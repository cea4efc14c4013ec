"""The rows that opening a request's scopes adds, written together: the records each scope
resolved to, the systems' tasks and the records each task covers. On PostgreSQL one statement
writes them all (each table's rows as arrays, unnested); elsewhere one statement a table."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    Insert,
    String,
    Table,
    Text,
    Uuid,
    bindparam,
    cast,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app.requests.models import RequestScope, ScopeRecord
from app.tasks.models import Task, TaskRecord

_SCOPE_RECORDS: Table = ScopeRecord.__table__  # type: ignore[assignment]
_TASKS: Table = Task.__table__  # type: ignore[assignment]
_TASK_RECORDS: Table = TaskRecord.__table__  # type: ignore[assignment]


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
    """What the scopes opened in this transaction add, until `write` writes it."""

    request_id: uuid.UUID
    scope_records: list[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=list)
    tasks: list[NewTask] = field(default_factory=list)
    _task_rows: list[dict[str, Any]] = field(default_factory=list)
    task_records: list[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=list)

    def add_scope_records(self, scope_id: uuid.UUID, record_ids: list[uuid.UUID]) -> None:
        self.scope_records.extend((scope_id, record_id) for record_id in record_ids)

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
        self.task_records.extend((task_id, r.id) for r in records)

    async def write(self, session: AsyncSession) -> None:
        """Write what was added since the last write (the scopes' rows must be written)."""
        if not (self.scope_records or self._task_rows or self.task_records):
            return
        connection = await session.connection()  # Core: plain rows, no ORM objects
        if connection.dialect.name == "postgresql":
            await connection.execute(_ALL_AT_ONCE, self._arrays())
        else:
            for table, rows in (
                (_SCOPE_RECORDS, [{"scope_id": s, "record_id": r} for s, r in self.scope_records]),
                (_TASKS, self._task_rows),
                (_TASK_RECORDS, [{"task_id": t, "record_id": r} for t, r in self.task_records]),
            ):
                if rows:
                    await connection.execute(insert(table), rows)
        self.scope_records, self._task_rows, self.task_records = [], [], []

    def _arrays(self) -> dict[str, list[Any]]:
        tasks = self._task_rows

        def json_texts(key: str) -> list[str]:
            # As the engine's JSON serializer writes them (orjson).
            return [orjson.dumps(t[key]).decode() for t in tasks]

        return {
            "sr_scope": [s for s, _ in self.scope_records],
            "sr_record": [r for _, r in self.scope_records],
            **{f"t_{key}": [t[key] for t in tasks] for key in _TASK_SCALARS},
            **{f"t_{key}": json_texts(key) for key in _TASK_JSON},
            "tr_task": [t for t, _ in self.task_records],
            "tr_record": [r for _, r in self.task_records],
        }


_TASK_SCALARS = (
    "id",
    "request_id",
    "scope_id",
    "system",
    "action",
    "status",
    "attempts",
    "created_at",
)


def _array(name: str, item: Any) -> Any:
    return bindparam(name, type_=ARRAY(item))


def _rows_of(table: Table, arrays: dict[str, Any]) -> Insert:
    """INSERT INTO table (columns) SELECT * FROM unnest(array, array, ...)."""
    unnested = func.unnest(*arrays.values()).table_valued(*arrays).render_derived()
    return insert(table).from_select(list(arrays), select(*unnested.c))


def _all_at_once() -> Insert:
    scope_records = _rows_of(
        _SCOPE_RECORDS,
        {"scope_id": _array("sr_scope", Uuid()), "record_id": _array("sr_record", Uuid())},
    ).cte("scope_records_written")
    task_columns = {
        "id": _array("t_id", Uuid()),
        "request_id": _array("t_request_id", Uuid()),
        "scope_id": _array("t_scope_id", Uuid()),
        "system": _array("t_system", String()),
        "action": _array("t_action", String()),
        "status": _array("t_status", String()),
        "record_ids": _array("t_record_ids", Text()),
        "record_refs": _array("t_record_refs", Text()),
        "details": _array("t_details", Text()),
        "attempts": _array("t_attempts", _TASKS.c.attempts.type),
        "created_at": _array("t_created_at", _TASKS.c.created_at.type),
    }
    unnested = func.unnest(*task_columns.values()).table_valued(*task_columns).render_derived()
    tasks = (
        insert(_TASKS)
        .from_select(
            list(task_columns),
            select(
                *(
                    cast(unnested.c[name], JSON) if name in _TASK_JSON else unnested.c[name]
                    for name in task_columns
                )
            ),
        )
        .cte("tasks_written")
    )
    return _rows_of(
        _TASK_RECORDS,
        {"task_id": _array("tr_task", Uuid()), "record_id": _array("tr_record", Uuid())},
    ).add_cte(scope_records, tasks)


_TASK_JSON = ("record_ids", "record_refs", "details")
_ALL_AT_ONCE = _all_at_once()
