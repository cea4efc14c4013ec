"""A burst of requests larger than the connection pool completes: no request holds two
pooled connections while waiting for another."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from httpx import ASGITransport, AsyncClient

from app.auth.service import _cache
from app.core.config import Settings
from app.core.db import Database
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


async def test_burst_beyond_pool_size(backend: str, tmp_path: Path) -> None:
    if backend != "postgresql":
        pytest.skip("the pool size is PostgreSQL's; SQLite serialises on its file")
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url, pool_size=2)  # at most 4 connections with overflow
        app = create_app(
            Settings(database_url=url, subject_key=TEST_SUBJECT_KEY, data_dir=tmp_path),
            database=database,
        )
        async with database.sessionmaker() as session:
            platform = await make_controller(session, kind="platform", name="Spix")
            await make_system(session, "accounts")
            await make_category(session, "account.profile")
            record_id = await make_record(
                session,
                system="accounts",
                controller_id=platform.id,
                categories=["account.profile"],
            )
            headers = await bearer(session, "admin")
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
