"""Item 1 and 2 of issue #16: every default path from SPIX_DSR_DATA_DIR, resolved once; the
subject key recorded in the database (id and fingerprint) and any other key refused; an
explicit database URL in production."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from app.core.config import Settings
from app.core.db import Database
from app.core.service_identity import ServiceIdentity, SubjectKeyMismatch, key_fingerprint
from app.main import create_app
from app.records.models import Record
from tests.builders import TEST_AUDIT_KEY, make_category, make_controller, make_system
from tests.databases import fresh_database
from tests.operations.cli import spix

OTHER_KEY = "o" * 40


def test_default_paths_resolve_once_from_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(data_dir=Path("state"))
    monkeypatch.chdir("/")  # a later change of folder moves nothing
    assert settings.data_dir == tmp_path / "state"
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'state' / 'spix-dsr.db'}"
    key = settings.resolve_subject_key()
    assert (tmp_path / "state" / "subject.key").read_bytes() == key


def test_commands_from_another_folder_use_the_same_database_and_key(tmp_path: Path) -> None:
    """The issue's replay: migrate in one folder, run a command from another one with the
    same data dir: same database, same key, nothing created where the command ran."""
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"SPIX_DSR_DATA_DIR": str(data)}
    migrated = spix("migrate", cwd=tmp_path, env=env)
    assert migrated.returncode == 0, migrated.stderr
    # The start prints what it runs against: data dir, database (no password), key id.
    assert f"data dir {data}" in migrated.stderr
    assert f"database sqlite+aiosqlite:///{data / 'spix-dsr.db'}" in migrated.stderr
    assert "subject key 'k1'" in migrated.stderr
    listed = spix("keys", "list", cwd=elsewhere, env=env)
    assert listed.returncode == 0, listed.stderr
    assert list(elsewhere.iterdir()) == []
    assert {"audit.key", "spix-dsr.db", "subject.key"} <= {p.name for p in data.iterdir()}


def _records_file(folder: Path, controller_id: str) -> Path:
    path = folder / "records.jsonl"
    path.write_text(
        json.dumps(
            {
                "system": "accounts",
                "record_ref": "acct-1",
                "controller_id": controller_id,
                "identities": [{"type": "email", "value": "one@example.com"}],
                "categories": ["account.profile"],
                "collected_at": "2026-01-01T00:00:00Z",
            }
        )
        + "\n",
        encoding="utf-8",
    )
    return path


async def test_import_with_another_data_dirs_key_is_refused(backend: str, tmp_path: Path) -> None:
    """The issue's replay: `import records` run with another data folder against the real
    database. It must neither mint a second key nor write a record no lookup would find."""
    async with fresh_database(backend, tmp_path, migrate=False) as url:
        real, stray = tmp_path / "real", tmp_path / "stray"
        stray.mkdir()
        migrated = spix(
            "migrate",
            cwd=tmp_path,
            env={"SPIX_DSR_DATABASE_URL": url, "SPIX_DSR_DATA_DIR": str(real)},
        )
        assert migrated.returncode == 0, migrated.stderr
        database = Database.from_url(url)
        async with database.sessionmaker() as session:
            controller = await make_controller(session, kind="platform", name="Spix")
            await make_system(session, "accounts")
            await make_category(session, "account.profile")
            stored = (await session.execute(select(ServiceIdentity))).scalar_one()
        real_key = (real / "subject.key").read_bytes().strip()
        assert (stored.subject_key_id, stored.subject_key_fingerprint) == (
            "k1",
            key_fingerprint(real_key),
        )
        assert real_key.decode() not in stored.subject_key_fingerprint
        path = _records_file(tmp_path, str(controller.id))

        # Another data folder (no key there yet): refused, and no key is created there.
        result = spix(
            "import",
            "records",
            str(path),
            cwd=stray,
            env={"SPIX_DSR_DATABASE_URL": url, "SPIX_DSR_DATA_DIR": str(stray / "data")},
        )
        assert result.returncode == 2, result.stdout + result.stderr
        assert "stores identities under subject key 'k1'" in result.stderr
        assert str(stray / "data") in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert not (stray / "data" / "subject.key").exists()

        # A configured key that is not the database's: refused too.
        result = spix(
            "import",
            "records",
            str(path),
            cwd=stray,
            env={"SPIX_DSR_DATABASE_URL": url, "SPIX_DSR_SUBJECT_KEY": OTHER_KEY},
        )
        assert result.returncode == 2, result.stdout + result.stderr
        assert "SPIX_DSR_SUBJECT_KEY" in result.stderr
        async with database.sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(Record)) == 0

        # The database's own key works, from any folder.
        result = spix(
            "import",
            "records",
            str(path),
            cwd=stray,
            env={"SPIX_DSR_DATABASE_URL": url, "SPIX_DSR_DATA_DIR": str(real)},
        )
        assert result.returncode == 0, result.stderr
        assert "created 1, updated 0, failed 0" in result.stdout
        await database.dispose()


async def test_the_app_refuses_to_start_with_another_subject_key(
    backend: str, tmp_path: Path
) -> None:
    async with fresh_database(backend, tmp_path) as url:

        def app_with(key: str) -> object:
            settings = Settings(
                database_url=url, subject_key=key, audit_key=TEST_AUDIT_KEY, data_dir=tmp_path
            )
            return create_app(settings, database=Database.from_url(url))

        first = app_with("f" * 40)
        async with first.router.lifespan_context(first):  # type: ignore[attr-defined]
            pass  # records the key
        second = app_with(OTHER_KEY)
        with pytest.raises(SubjectKeyMismatch, match="subject key 'k1'"):
            async with second.router.lifespan_context(second):  # type: ignore[attr-defined]
                pass
        await second.state.db.dispose()  # type: ignore[attr-defined]
        again = app_with("f" * 40)
        async with again.router.lifespan_context(again):  # type: ignore[attr-defined]
            pass


async def test_serve_refuses_another_subject_key(backend: str, tmp_path: Path) -> None:
    async with fresh_database(backend, tmp_path, migrate=False) as url:
        env = {"SPIX_DSR_DATABASE_URL": url, "SPIX_DSR_SUBJECT_KEY": "s" * 40}
        assert spix("migrate", cwd=tmp_path, env=env).returncode == 0
        result = spix(
            "serve", "--port", "1", cwd=tmp_path, env={**env, "SPIX_DSR_SUBJECT_KEY": OTHER_KEY}
        )
        assert result.returncode == 2, result.stderr
        assert "is not that key" in result.stderr


def test_production_requires_an_explicit_database_url(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="SPIX_DSR_DATABASE_URL is not set"):
        Settings(env="production", subject_key="s" * 40, audit_key="a" * 40)
    result = spix(
        "migrate",
        cwd=tmp_path,
        env={
            "SPIX_DSR_ENV": "production",
            "SPIX_DSR_SUBJECT_KEY": "s" * 40,
            "SPIX_DSR_AUDIT_KEY": "a" * 40,
            "SPIX_DSR_DATA_DIR": str(tmp_path / "data"),
        },
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "spix-dsr: SPIX_DSR_DATABASE_URL is not set: production requires an explicit database "
        "URL (postgresql+asyncpg://user:password@host/database)"
    ]
    assert list(tmp_path.iterdir()) == []  # no SQLite file, no data folder
    assert "Traceback" not in result.stderr
