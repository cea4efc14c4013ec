"""`spix-dsr import records FILE.jsonl`: streamed batches, errors by line number."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select

from app.core.db import Database
from app.records.models import Record
from tests.builders import make_category, make_controller, make_system
from tests.databases import fresh_database, run_cli


async def test_import_streams_and_reports_bad_lines(backend: str, tmp_path: Path) -> None:
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        async with database.sessionmaker() as session:
            controller = await make_controller(session, kind="platform", name="Spix")
            await make_system(session, "accounts")
            await make_category(session, "account.profile")

        def line(n: int, category: str = "account.profile") -> str:
            return json.dumps(
                {
                    "system": "accounts",
                    "record_ref": f"acct-{n}",
                    "controller_id": str(controller.id),
                    "identities": [{"type": "email", "value": f"user{n}@example.com"}],
                    "categories": [category],
                    "collected_at": "2026-01-01T00:00:00Z",
                }
            )

        lines = [line(n) for n in range(2500)]
        lines[4] = "{not json"
        lines[1199] = line(1199, category="no.such")
        path = tmp_path / "records.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

        result = run_cli(url, tmp_path, "import", "records", str(path), "--batch-size", "700")
        assert result.returncode == 1, result.stderr
        assert "created 2498, updated 0, failed 2" in result.stdout
        assert "line 5: not valid JSON" in result.stderr
        assert "line 1200: No category 'no.such'" in result.stderr
        assert "user" not in result.stderr  # no identity values in the report

        lines[4], lines[1199] = line(4), line(1199)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        again = run_cli(url, tmp_path, "import", "records", str(path))
        assert again.returncode == 0, again.stderr
        assert "created 2, updated 2498, failed 0" in again.stdout

        async with database.sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(Record)) == 2500
        await database.dispose()
