"""Item 6 of issue #16: the import's outcome does not depend on the batch size (a record_ref
given twice updates, in file order), field errors are printed, and the progress line shows
count, rate and time left from the file's size."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import select

from app.core.db import Database
from app.core.identity import BlindIndexer
from app.records.import_progress import ImportProgress, import_progress
from app.records.importer import import_records
from app.records.models import Record, RecordProfile
from tests.builders import TEST_SUBJECT_KEY, make_category, make_controller, make_system
from tests.databases import fresh_database
from tests.operations.cli import spix


def _line(controller_id: uuid.UUID, ref: str, category: str, **extra: Any) -> str:
    return json.dumps(
        {
            "system": "accounts",
            "record_ref": ref,
            "controller_id": str(controller_id),
            "identities": [{"type": "email", "value": f"{ref}@example.com"}],
            "categories": [category],
            "collected_at": "2026-01-01T00:00:00Z",
            **extra,
        }
    )


async def _outcome(
    backend: str, tmp_path: Path, lines: list[str], batch_size: int
) -> tuple[tuple[int, int, int], list[tuple[int, str]], dict[str, list[str]]]:
    """Import `lines` into a fresh database: (counts, errors, each ref's categories)."""
    await asyncio.to_thread(tmp_path.mkdir)
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        async with database.sessionmaker() as session:
            controller = await make_controller(session, kind="platform", name="Spix")
            await make_system(session, "accounts")
            for key in ("account.profile", "account.billing"):
                await make_category(session, key)
        path = tmp_path / f"records-{batch_size}.jsonl"
        path.write_text(
            "\n".join(line.replace("CONTROLLER", str(controller.id)) for line in lines) + "\n",
            encoding="utf-8",
        )
        indexer = BlindIndexer(TEST_SUBJECT_KEY.encode(), "k1")
        report = await import_records(database, indexer, path, batch_size=batch_size)
        async with database.sessionmaker() as session:
            rows = await session.execute(
                select(Record.record_ref, RecordProfile.categories).join(
                    RecordProfile, RecordProfile.id == Record.profile_id
                )
            )
            state = {ref: sorted(categories) for ref, categories in rows}
        await database.dispose()
    return (report.created, report.updated, report.failed), report.errors, state


async def test_import_outcome_is_the_same_for_batch_sizes_1_and_1000(
    backend: str, tmp_path: Path
) -> None:
    """The issue's replay: two lines with the same record_ref failed in one batch and updated
    with --batch-size 1. Now both sizes give the file-order outcome: the later line updates."""
    controller = uuid.UUID(int=0)  # replaced by each database's controller

    def line(ref: str, category: str, **extra: Any) -> str:
        return _line(controller, ref, category, **extra).replace(str(controller), "CONTROLLER")

    lines = [
        line("acct-1", "account.profile"),
        line("acct-2", "account.profile"),
        line("acct-1", "account.billing"),  # same ref: updates line 1
        line("acct-3", "account.profile"),
        line("acct-1", "account.profile"),  # and again
        line("acct-2", "no.such"),  # a bad update leaves line 2's record as it was
        line("acct-4", "account.profile", collected_at="not a time"),
    ]
    one = await _outcome(backend, tmp_path / "one", lines, 1)
    thousand = await _outcome(backend, tmp_path / "thousand", lines, 1000)
    assert one == thousand
    counts, errors, state = thousand
    assert counts == (3, 2, 2)
    assert state == {
        "acct-1": ["account.profile"],
        "acct-2": ["account.profile"],
        "acct-3": ["account.profile"],
    }
    assert [number for number, _ in errors] == [6, 7]


async def test_a_field_error_is_printed_with_its_message(backend: str, tmp_path: Path) -> None:
    """Was: `line 1: The record has invalid fields; see errors (collected_at)`, no error."""
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        async with database.sessionmaker() as session:
            controller = await make_controller(session, kind="platform", name="Spix")
            await make_system(session, "accounts")
            await make_category(session, "account.profile")
        await database.dispose()
        path = tmp_path / "records.jsonl"
        path.write_text(
            _line(controller.id, "acct-1", "account.profile", collected_at="yesterday") + "\n",
            encoding="utf-8",
        )
        result = spix(
            "import",
            "records",
            str(path),
            cwd=tmp_path,
            env={"SPIX_DSR_DATABASE_URL": url, "SPIX_DSR_DATA_DIR": str(tmp_path / "data")},
        )
    assert result.returncode == 1, result.stderr
    (error,) = [ln for ln in result.stderr.splitlines() if ln.startswith("line ")]
    assert error.startswith("line 1: The record has invalid fields: collected_at: "), error
    assert "see errors" not in error
    assert len(error) > len("line 1: The record has invalid fields: collected_at: ") + 10


def test_progress_shows_count_rate_and_time_left() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, color_system=None)
    with import_progress(console) as progress:
        feed = ImportProgress(progress, file_size=1_000_000)
        progress.tasks[0].start_time = progress.get_time() - 10.0  # ten seconds in
        feed(2500, 250_000)
        feed(2500, 500_000)
        line = progress.get_renderable()
        console.print(line)
    text = out.getvalue()
    assert "5,000 records" in text
    assert "500 records/s" in text
    assert "50%" in text
    assert "eta 0:00:" in text  # half the bytes in ten seconds: about ten seconds left
