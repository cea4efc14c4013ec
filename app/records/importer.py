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
from app.core.session import after_commit
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


def _batches(
    handle: BinaryIO, size: int, report: ImportReport
) -> Iterator[tuple[list[tuple[int, Any]], int]]:
    """(batch, bytes read so far). Lines are read as bytes and decoded one by one: a bad line
    is reported by its number and the file goes on."""
    batch: list[tuple[int, Any]] = []
    read = 0
    for number, raw in enumerate(handle, start=1):
        read += len(raw)
        if not raw.strip():
            continue
        try:
            item = _parse(number, raw)
        except ValueError as exc:
            report.fail(number, str(exc))
            continue
        batch.append((number, item))
        if len(batch) == size:
            yield batch, read
            batch = []
    if batch:
        yield batch, read


def _ref(item: Any) -> tuple[str, str] | None:
    system, ref = item.get("system"), item.get("record_ref")
    return (system, ref) if isinstance(system, str) and isinstance(ref, str) else None


def _in_file_order(batch: list[tuple[int, Any]]) -> Iterator[list[tuple[int, Any]]]:
    """The batch cut where a record_ref repeats: each part registers after the one before,
    so a later line updates an earlier one, as with --batch-size 1 (a batch of the API
    refuses a ref twice)."""
    part: list[tuple[int, Any]] = []
    seen: set[tuple[str, str]] = set()
    for number, item in batch:
        key = _ref(item)
        if key is not None and key in seen:
            yield part
            part, seen = [], set()
        part.append((number, item))
        if key is not None:
            seen.add(key)
    if part:
        yield part


def _describe(outcome: register.Registered) -> str:
    """The problem with each field it names: `detail (loc)`, or `detail: loc: msg; ...`."""
    assert outcome.problem is not None
    error = outcome.problem.error
    fields = []
    for e in error.errors or []:
        where = ".".join(str(p) for p in e["loc"])
        message = str(e.get("msg") or "")
        fields.append(where if not message or message == error.detail else f"{where}: {message}")
    if not fields:
        return error.detail
    if all(": " not in f for f in fields):
        return f"{error.detail} ({', '.join(fields)})"
    detail = error.detail.removesuffix("; see errors")
    return f"{detail}: {'; '.join(fields)}"


async def _write(
    database: Database, indexer: BlindIndexer, file: str, batch: list[tuple[int, Any]]
) -> list[register.Registered]:
    async with database.sessionmaker() as session:
        async with session.begin():
            outcomes = await register.register_batch(
                session, OPERATOR_PRINCIPAL, indexer, [item for _, item in batch], import_file=file
            )
        await after_commit(session, database)  # the batch's audit events, linked
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
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """`progress(lines, bytes_read)` after each batch: its lines, and the file's bytes read."""
    report = ImportReport()
    with path.open("rb") as handle:
        for batch, read in _batches(handle, batch_size, report):
            for part in _in_file_order(batch):
                await _import_batch(database, indexer, path.name, part, report)
            if progress is not None:
                progress(len(batch), read)
    if report.created:
        # Fresh statistics after a bulk load, so the planner keeps using the indexes; with
        # autovacuum off (or not yet run) a grown table is planned as if it were empty.
        async with database.engine.connect() as connection:
            await connection.execute(text("ANALYZE"))
            await connection.commit()
    return report
