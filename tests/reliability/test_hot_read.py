"""Hot reads (app/core/hot_read.py) run their SQL straight on PostgreSQL's driver: they must
give the rows a Core execute gives, and a connection that broke under one must answer 503 and
leave the pool, as any other read does."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from httpx import ASGITransport
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import Settings
from app.core.db import Database
from app.main import create_app
from app.retention.answer import _DECISION_BY_KIND
from tests.builders import (
    TEST_SUBJECT_KEY,
    make_category,
    make_controller,
    make_record,
    make_system,
)
from tests.conftest import bearer
from tests.databases import fresh_database


async def _world(database: Database) -> tuple[str, dict[str, str]]:
    async with database.sessionmaker() as session:
        controller = await make_controller(session, kind="platform", name="Spix")
        await make_system(session, "accounts")
        await make_category(session, "account.profile")
        record_id = await make_record(
            session,
            system="accounts",
            controller_id=controller.id,
            categories=["account.profile"],
            events={"account_closed": "2026-02-01T00:00:00Z"},
        )
        admin = await bearer(session, "admin")
    return str(record_id), admin


async def test_a_hot_read_gives_the_rows_core_gives(backend: str, tmp_path: Path) -> None:
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        record_id, _ = await _world(database)
        hot = _DECISION_BY_KIND["everything"]
        async with database.engine.connect() as connection:
            params = {"record_id": uuid.UUID(record_id)}
            (core,) = (await connection.execute(hot.statement, params)).all()
            (fast,) = await hot.rows(connection, params)
            assert await hot.rows(connection, {"record_id": uuid.uuid4()}) == []
        await database.dispose()
    assert fast._fields == tuple(core._fields)
    assert tuple(fast) == tuple(core)
    assert isinstance(fast.events, dict) and "account_closed" in fast.events  # JSON decoded


async def test_a_connection_broken_under_a_hot_read_answers_503_then_recovers(
    backend: str, tmp_path: Path
) -> None:
    if backend != "postgresql":
        pytest.skip("an embedded SQLite database has no server connection to terminate")
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url, pool_size=1)
        app = create_app(
            Settings(database_url=url, subject_key=TEST_SUBJECT_KEY, data_dir=tmp_path),
            database=database,
        )
        record_id, admin = await _world(database)
        killer = create_async_engine(url)
        path = f"/v1/records/{record_id}/retention"
        async with httpx.AsyncClient(
            transport=ASGITransport(app=app), base_url="http://t", headers=admin
        ) as client:
            assert (await client.get(path)).status_code == 200  # the pool holds a connection
            async with killer.connect() as connection:
                terminated = await connection.scalar(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
            assert terminated
            broken = await client.get(path)
            after = [(await client.get(path)).status_code for _ in range(3)]
        await killer.dispose()
        await database.dispose()
    assert broken.status_code == 503, broken.text
    assert broken.headers["content-type"].startswith("application/problem+json")
    assert after == [200, 200, 200]
