"""Bulk import of a JSON Lines file: streamed in batches, each batch its own transaction,
so memory stays flat whatever the file's size."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson
from sqlalchemy import text

from app.audit.service import OPERATOR, record
from app.auth.service import Principal
from app.core.db import Database
from app.core.identity import BlindIndexer
from app.records import service

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


def _batches(handle: TextIO, size: int, report: ImportReport) -> Iterator[list[tuple[int, Any]]]:
    batch: list[tuple[int, Any]] = []
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            report.fail(number, "not valid JSON")
            continue
        if not isinstance(item, dict):
            report.fail(number, "not a JSON object")
            continue
        batch.append((number, item))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _describe(outcome: service.Registered) -> str:
    assert outcome.problem is not None
    error = outcome.problem.error
    where = ", ".join(".".join(str(p) for p in e["loc"]) for e in error.errors or [])
    return f"{error.detail} ({where})" if where else error.detail


async def import_records(
    database: Database,
    indexer: BlindIndexer,
    path: Path,
    *,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    report = ImportReport()
    with path.open(encoding="utf-8") as handle:
        for batch in _batches(handle, batch_size, report):
            async with database.sessionmaker() as session, session.begin():
                outcomes = await service.register(
                    session, OPERATOR_PRINCIPAL, indexer, [item for _, item in batch]
                )
                written = [o for o in outcomes if o.record_id is not None]
                for outcome in outcomes:
                    line = batch[outcome.index][0]
                    if outcome.status == "created":
                        report.created += 1
                    elif outcome.status == "updated":
                        report.updated += 1
                    else:
                        report.fail(line, _describe(outcome))
                if written:
                    record(
                        session,
                        OPERATOR,
                        "records.imported",
                        "record_batch",
                        str(written[0].record_id),
                        {
                            "file": path.name,
                            "written": len(written),
                            "errors": len(outcomes) - len(written),
                        },
                    )
            if progress is not None:
                progress(len(batch))
    if report.created:
        # Fresh statistics after a bulk load, so the planner keeps using the indexes; with
        # autovacuum off (or not yet run) a grown table is planned as if it were empty.
        async with database.engine.connect() as connection:
            await connection.execute(text("ANALYZE"))
            await connection.commit()
    return report
