"""A burst of requests larger than the connection pool completes: no request holds two
pooled connections while waiting for another."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import event

from app.auth.service import _cache
from app.core.config import Settings
from app.core.db import Database, _postgres_connect_args
from app.main import create_app
from tests.builders import (
    TEST_SUBJECT_KEY,
    make_category,
    make_controller,
    make_record,
    make_system,
)
from tests.conftest import bearer
from tests.databases import fresh_database


async def _one_record(database: Database) -> tuple[uuid.UUID, dict[str, str]]:
    """A record to check and an admin key's headers."""
    async with database.sessionmaker() as session:
        platform = await make_controller(session, kind="platform", name="Spix")
        await make_system(session, "accounts")
        await make_category(session, "account.profile")
        record_id = await make_record(
            session, system="accounts", controller_id=platform.id, categories=["account.profile"]
        )
        return record_id, await bearer(session, "admin")


async def test_burst_beyond_pool_size(backend: str, tmp_path: Path) -> None:
    if backend != "postgresql":
        pytest.skip("the pool size is PostgreSQL's; SQLite serialises on its file")
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url, pool_size=2)  # at most 4 connections with overflow
        app = create_app(
            Settings(database_url=url, subject_key=TEST_SUBJECT_KEY, data_dir=tmp_path),
            database=database,
        )
        record_id, headers = await _one_record(database)
        _cache.clear()  # every request of the burst verifies its key in the database
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
            responses = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        client.get(f"/v1/records/{record_id}/retention", headers=headers)
                        for _ in range(20)
                    )
                ),
                timeout=20,
            )
        await database.dispose()
        assert [r.status_code for r in responses] == [200] * 20


def test_no_tls_negotiation_unless_the_url_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    # asyncpg's default asks every new connection to negotiate TLS, a round trip on a local
    # socket; the URL or PGSSLMODE turns it back on.
    monkeypatch.delenv("PGSSLMODE", raising=False)
    plain = "postgresql+asyncpg://spix@127.0.0.1:5432/spix"
    assert _postgres_connect_args(plain) == {"ssl": False}
    assert _postgres_connect_args(plain + "?ssl=require") == {}
    assert _postgres_connect_args(plain + "?sslmode=verify-full") == {}
    monkeypatch.setenv("PGSSLMODE", "require")
    assert _postgres_connect_args(plain) == {}


async def test_steady_load_opens_no_connections(backend: str, tmp_path: Path) -> None:
    """16 concurrent requests, again and again, with the default pool: connections are opened
    by the first wave only (an overflow connection would be opened and closed every time)."""
    if backend != "postgresql":
        pytest.skip("the pool is PostgreSQL's")
    async with fresh_database(backend, tmp_path) as url:
        settings = Settings(database_url=url, subject_key=TEST_SUBJECT_KEY, data_dir=tmp_path)
        database = Database.from_url(url, pool_size=settings.db_pool_size)
        app = create_app(settings, database=database)
        record_id, headers = await _one_record(database)
        opened = 0

        def count(*_args: object) -> None:
            nonlocal opened
            opened += 1

        event.listen(database.engine.sync_engine, "connect", count)
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
            waves = []
            for _ in range(4):
                before = opened
                answers = await asyncio.gather(
                    *(
                        client.get(f"/v1/records/{record_id}/retention", headers=headers)
                        for _ in range(16)
                    )
                )
                assert {a.status_code for a in answers} == {200}
                waves.append(opened - before)
        await database.dispose()
        assert waves[1:] == [0, 0, 0], waves
