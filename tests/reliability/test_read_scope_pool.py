"""A request's hot reads take a connection from the engine's pool and give it back without
entering a greenlet when the pool needs no I/O for it (app/core/hot_read.py::ReadScope), and
through one when it does: a connection past its recycle age or invalidated while idle is
opened again, an overflow connection is closed, and the pool ends as it began."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import QueuePool
from sqlalchemy.util import greenlet_spawn

from app.core.db import Database
from app.core.hot_read import HotRead, ReadScope
from app.systems.models import System
from tests.databases import fresh_database, greenlet_switches, settled_server_connections

_COUNT = HotRead(select(func.count().label("systems")).select_from(System))


@pytest.fixture(autouse=True)
def _postgresql_only(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("hot reads take pooled driver connections on PostgreSQL only")


async def _read(database: Database) -> int:
    async with ReadScope(database) as reads:
        (row,) = await reads.rows(_COUNT, {})
        return int(row[0])


def _pool(database: Database) -> QueuePool:
    pool = database.engine.sync_engine.pool
    assert isinstance(pool, QueuePool)
    return pool


def _database(url: str, **pool: Any) -> Database:
    return Database(create_async_engine(url, **pool))


async def test_steady_reads_take_and_give_back_connections_without_a_greenlet(
    tmp_path: Path,
) -> None:
    async with fresh_database("postgresql", tmp_path) as url:
        database = _database(url, pool_size=2, max_overflow=2)
        assert await _read(database) == 0  # the pool opens its first connection in a greenlet
        with greenlet_switches() as switches:
            for _ in range(20):
                assert await _read(database) == 0
        assert switches == []
        assert (_pool(database).checkedin(), _pool(database).checkedout()) == (1, 0)
        await database.dispose()


async def test_a_connection_past_its_recycle_age_is_opened_again(tmp_path: Path) -> None:
    async with fresh_database("postgresql", tmp_path) as url:
        database = _database(url, pool_size=1, max_overflow=0, pool_recycle=1)
        observer = create_async_engine(url)
        assert await _read(database) == 0
        await asyncio.sleep(1.2)
        with greenlet_switches() as switches:
            assert await _read(database) == 0
        assert switches, "reopening the connection awaits the driver, in a greenlet"
        assert (_pool(database).checkedin(), _pool(database).checkedout()) == (1, 0)
        # The old connection was closed, not left open beside the new one.
        assert await settled_server_connections(observer, 1) == 1
        await observer.dispose()
        await database.dispose()


async def test_a_connection_invalidated_while_idle_is_opened_again(tmp_path: Path) -> None:
    async with fresh_database("postgresql", tmp_path) as url:
        database = _database(url, pool_size=1, max_overflow=0)
        assert await _read(database) == 0
        pooled = await database.engine.raw_connection()
        await greenlet_spawn(pooled.invalidate)
        await greenlet_spawn(pooled.close)  # back in the pool, without a connection
        assert _pool(database).checkedin() == 1
        for _ in range(3):
            assert await _read(database) == 0
        assert (_pool(database).checkedin(), _pool(database).checkedout()) == (1, 0)
        await database.dispose()


async def test_overflow_connections_are_closed_when_given_back(tmp_path: Path) -> None:
    async with fresh_database("postgresql", tmp_path) as url:
        database = _database(url, pool_size=1, max_overflow=3)
        observer = create_async_engine(url)
        release, all_holding = asyncio.Event(), asyncio.Event()
        holding = 0

        async def held_read() -> int:
            nonlocal holding
            async with ReadScope(database) as reads:
                (row,) = await reads.rows(_COUNT, {})
                holding += 1
                if holding == 4:
                    all_holding.set()
                await release.wait()
            return int(row[0])

        readers = [asyncio.ensure_future(held_read()) for _ in range(4)]
        await asyncio.wait_for(all_holding.wait(), 30)
        assert _pool(database).checkedout() == 4
        release.set()
        assert await asyncio.gather(*readers) == [0, 0, 0, 0]
        assert (_pool(database).checkedin(), _pool(database).checkedout()) == (1, 0)
        assert await settled_server_connections(observer, 1) == 1  # the overflow ones closed
        with greenlet_switches() as switches:
            assert await _read(database) == 0
        assert switches == []
        await observer.dispose()
        await database.dispose()
