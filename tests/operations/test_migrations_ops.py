"""Items 3 and 4 of issue #16: a command on an unmigrated database says what to run in one
line and creates nothing; replicas migrating one empty database at once all succeed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.core.migrate import alembic_config, upgrade
from app.core.revisions import head_revisions
from app.core.schema_state import applied_revisions
from tests.databases import fresh_database
from tests.operations.cli import spix

COMMANDS = [
    ("keys", "list"),
    ("keys", "create", "--role", "admin"),
    ("seed",),
    ("audit", "verify"),
    ("import", "records", "records.jsonl"),
    ("bootstrap",),
    ("serve", "--port", "1"),
]


async def _tables(url: str) -> list[str]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return list(await connection.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
async def test_a_command_on_an_unmigrated_database_says_what_to_run(
    backend: str, tmp_path: Path, command: tuple[str, ...]
) -> None:
    (tmp_path / "records.jsonl").write_text("{}\n", encoding="utf-8")
    if backend == "sqlite":
        database_file = tmp_path / "absent.db"
        url = f"sqlite+aiosqlite:///{database_file}"
        result = spix(*command, cwd=tmp_path, env={"SPIX_DSR_DATABASE_URL": url})
        assert not database_file.exists()  # nothing created, not even an empty file
    else:
        async with fresh_database(backend, tmp_path, migrate=False) as url:
            result = spix(*command, cwd=tmp_path, env={"SPIX_DSR_DATABASE_URL": url})
            assert await _tables(url) == []
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("spix-dsr: the database at "), result.stderr
    assert lines[-1].endswith("is not migrated: run `spix-dsr migrate`")
    assert len(lines) <= 2  # `serve` prints what it runs against first; no traceback
    assert "Traceback" not in result.stderr


async def test_a_database_behind_the_newest_migration_is_named(
    backend: str, tmp_path: Path
) -> None:
    async with fresh_database(backend, tmp_path, migrate=False) as url:
        (head,) = head_revisions()
        previous = ScriptDirectory.from_config(alembic_config(url)).get_revision(head).down_revision
        assert isinstance(previous, str)
        await asyncio.to_thread(upgrade, url, previous)
        result = spix("keys", "list", cwd=tmp_path, env={"SPIX_DSR_DATABASE_URL": url})
        assert result.returncode == 2
        assert result.stderr.strip() == (
            f"spix-dsr: the database at {url} is not at the newest migration ({previous}, "
            f"newest {head}): run `spix-dsr migrate`"
        )
        assert await applied_revisions(url) == {previous}  # left as it was


async def test_concurrent_migrates_on_an_empty_database_all_succeed(
    backend: str, tmp_path: Path
) -> None:
    """The issue's replay with four replicas starting at once: without the advisory lock two
    of three failed (a unique violation in pg_type as both created the same table)."""
    async with fresh_database(backend, tmp_path, migrate=False) as url:
        env = {"SPIX_DSR_DATABASE_URL": url, "SPIX_DSR_DATA_DIR": str(tmp_path / "data")}
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "app",
                "migrate",
                cwd=tmp_path,
                env={**_clean_env(), **env},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(4)
        ]
        outputs = await asyncio.wait_for(
            asyncio.gather(*(p.communicate() for p in processes)), timeout=180
        )
        for process, (out, err) in zip(processes, outputs, strict=True):
            assert process.returncode == 0, err.decode()
            assert b"database is at the newest revision" in out
        assert await applied_revisions(url) == set(head_revisions())
        after = spix("keys", "list", cwd=tmp_path, env=env)
        assert after.returncode == 0, after.stderr


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("SPIX_DSR_")}
