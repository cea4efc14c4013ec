"""Bulk import of a JSON Lines file: streamed in batches, each batch its own transaction,
so memory stays flat whatever the file's size."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.auth.service import Principal
from app.core.db import Database
from app.core.identity import BlindIndexer
from app.core.resilience import Fault, classify
from app.records import register

# The operator at the command line acts with the privacy team's rights.
OPERATOR_PRINCIPAL = Principal(key_id=uuid.UUID(int=0), role="admin")


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    failed: int = 0
    # (line number, message) for the first failures; the rest are only counted.
    errors: list[tuple[int, str]] = field(default_factory=list)

    def fail(self, line: int, message: str, keep: int = 100) -> None:
        self.failed += 1
        if len(self.errors) < keep:
            self.errors.append((line, message))


def _has_nul(value: Any) -> bool:
    """A NUL character anywhere in the parsed line (PostgreSQL text cannot hold one)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _parse(number: int, raw: bytes) -> Any:
    """The line's JSON object; raises ValueError with what is wrong (never the content)."""
    try:
        line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError:
        raise ValueError("not valid UTF-8") from None
    if "\x00" in line:
        raise ValueError("contains a NUL byte")
    try:
        item = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise ValueError("not valid JSON") from None
    if not isinstance(item, dict):
        raise ValueError("not a JSON object")
    if _has_nul(item):
        raise ValueError("contains a NUL character")
    return item


def _batches(handle: BinaryIO, size: int, report: ImportReport) -> Iterator[list[tuple[int, Any]]]:
    """Lines are read as bytes and decoded one by one: a bad line is reported by its number
    and the file goes on."""
    batch: list[tuple[int, Any]] = []
    for number, raw in enumerate(handle, start=1):
        if not raw.strip():
            continue
        try:
            item = _parse(number, raw)
        except ValueError as exc:
            report.fail(number, str(exc))
            continue
        batch.append((number, item))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _describe(outcome: register.Registered) -> str:
    assert outcome.problem is not None
    error = outcome.problem.error
    where = ", ".join(".".join(str(p) for p in e["loc"]) for e in error.errors or [])
    return f"{error.detail} ({where})" if where else error.detail


async def _write(
    database: Database, indexer: BlindIndexer, file: str, batch: list[tuple[int, Any]]
) -> list[register.Registered]:
    async with database.sessionmaker() as session, session.begin():
        outcomes = await register.register_batch(
            session, OPERATOR_PRINCIPAL, indexer, [item for _, item in batch], import_file=file
        )
    return outcomes


async def _import_batch(
    database: Database,
    indexer: BlindIndexer,
    file: str,
    batch: list[tuple[int, Any]],
    report: ImportReport,
) -> None:
    attempt = 0
    while True:
        try:
            outcomes = await _write(database, indexer, file, batch)
            break
        except DBAPIError as exc:
            fault = classify(exc)
            if fault is Fault.CONFLICT and attempt < 2:
                attempt += 1  # lost a deadlock to a concurrent writer: run it again
                continue
            if fault is not None:
                raise
            if len(batch) == 1:
                report.fail(batch[0][0], "rejected by the database")
                return
        # A line the database refuses must not lose the others: each on its own.
        for line in batch:
            await _import_batch(database, indexer, file, [line], report)
        return
    # Counted once committed.
    for outcome in outcomes:
        if outcome.status == "created":
            report.created += 1
        elif outcome.status == "updated":
            report.updated += 1
        else:
            report.fail(batch[outcome.index][0], _describe(outcome))


async def import_records(
    database: Database,
    indexer: BlindIndexer,
    path: Path,
    *,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    report = ImportReport()
    with path.open("rb") as handle:
        for batch in _batches(handle, batch_size, report):
            await _import_batch(database, indexer, path.name, batch, report)
            if progress is not None:
                progress(len(batch))
    if report.created:
        # Fresh statistics after a bulk load, so the planner keeps using the indexes; with
        # autovacuum off (or not yet run) a grown table is planned as if it were empty.
        async with database.engine.connect() as connection:
            await connection.execute(text("ANALYZE"))
            await connection.commit()
    return report
