"""The service's session (app/core/lean_session.py) skips SQLAlchemy's greenlet where the
session's synchronous code awaits nothing: a flush with nothing to write, closing a session
whose transaction has ended, and, on PostgreSQL, taking the transaction's connection when the
pool holds one idle. Everything else goes through the greenlet, and the session behaves as
SQLAlchemy's does: writes flush and commit, a session closed in its transaction rolls back
and gives its connection back, a connection past its recycle age or invalidated while idle
is opened again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import Integer, String, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import QueuePool
from sqlalchemy.util import greenlet_spawn

from app.core.db import create_engine
from app.core.lean_session import LeanSession
from tests.databases import greenlet_switches, server_connections, settled_server_connections

_TABLE = f"lean_session_probe_{uuid.uuid4().hex[:8]}"


class _Base(DeclarativeBase):
    pass


class _Probe(_Base):
    __tablename__ = _TABLE
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    note: Mapped[str] = mapped_column(String(20))


@asynccontextmanager
async def _probe_table(url: str, **pool: Any) -> AsyncIterator[AsyncEngine]:
    """An engine whose database has the probe table (dropped afterwards)."""
    engine = create_engine(url) if not pool else create_async_engine(url, **pool)
    async with engine.begin() as connection:
        await connection.run_sync(_Base.metadata.create_all)
    try:
        yield engine
    finally:
        async with engine.begin() as connection:
            await connection.run_sync(_Base.metadata.drop_all)
        await engine.dispose()


def _sessions(engine: AsyncEngine) -> async_sessionmaker[LeanSession]:
    return async_sessionmaker(engine, class_=LeanSession, expire_on_commit=False)


async def _notes(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        return list(await connection.scalars(select(_Probe.note).order_by(_Probe.id)))


def _pool(engine: AsyncEngine) -> QueuePool:
    pool = engine.sync_engine.pool
    assert isinstance(pool, QueuePool)
    return pool


async def test_a_clean_flush_and_closing_after_the_commit_enter_no_greenlet(
    database_url: str,
) -> None:
    async with _probe_table(database_url) as engine:
        async with _sessions(engine)() as session:
            session.add(_Probe(id=1, note="first"))
            await session.commit()
            with greenlet_switches() as switches:
                await session.flush()
                await session.close()
            assert switches == []
        assert await _notes(engine) == ["first"]


async def test_what_is_pending_or_changed_is_flushed(database_url: str) -> None:
    async with _probe_table(database_url) as engine:
        async with _sessions(engine)() as session:
            session.sync_session.autoflush = False  # only the explicit flushes write
            connection = await session.connection()
            count = select(func.count()).select_from(_Probe)
            probe = _Probe(id=1, note="new")
            session.add(probe)
            await session.flush()  # new: written
            assert await connection.scalar(count) == 1
            probe.note = "changed"
            await session.flush()  # dirty: updated
            assert await connection.scalar(select(_Probe.note)) == "changed"
            await session.delete(probe)
            await session.flush()  # deleted
            assert await connection.scalar(count) == 0
            session.add(_Probe(id=2, note="kept"))
            await session.commit()
        assert await _notes(engine) == ["kept"]


async def test_a_session_closed_in_its_transaction_rolls_back_and_gives_its_connection_back(
    database_url: str,
) -> None:
    async with _probe_table(database_url) as engine:
        session = _sessions(engine)()
        async with session:
            session.add(_Probe(id=1, note="dropped"))
            await session.flush()
            assert session.in_transaction()
        assert not session.in_transaction()
        if engine.dialect.name == "postgresql":
            assert _pool(engine).checkedout() == 0
        assert await _notes(engine) == []


async def test_the_transactions_connection_is_taken_from_the_idle_pool_without_a_greenlet(
    database_url: str, backend: str
) -> None:
    async with _probe_table(database_url) as engine:
        sessions = _sessions(engine)
        async with sessions() as session:
            first = await session.connection()  # the pool may open one here
            await session.commit()
        async with sessions() as session:
            with greenlet_switches() as switches:
                connection = await session.connection()
                again = await session.connection()
            assert again is connection
            if backend == "postgresql":
                assert switches == []
                assert connection.sync_connection is not None
                assert first.closed  # the first session's, given back
            else:
                assert switches, "SQLite begins with BEGIN IMMEDIATE, awaited in a greenlet"
            await connection.execute(text(f"INSERT INTO {_TABLE} (id, note) VALUES (1, 'x')"))
            session.add(_Probe(id=2, note="y"))
            await session.commit()
        assert await _notes(engine) == ["x", "y"]
        if backend == "postgresql":
            assert (_pool(engine).checkedin(), _pool(engine).checkedout()) == (1, 0)


async def test_inside_a_savepoint_the_connection_is_the_transactions(database_url: str) -> None:
    async with _probe_table(database_url) as engine:
        async with _sessions(engine)() as session:
            session.add(_Probe(id=1, note="outer"))
            await session.flush()
            outer = await session.connection()
            savepoint = await session.begin_nested()
            assert await session.connection() is outer
            session.add(_Probe(id=2, note="inner"))
            await session.flush()
            await savepoint.rollback()
            await session.commit()
        assert await _notes(engine) == ["outer"]


@pytest.fixture
def postgresql_url(database_url: str, backend: str) -> str:
    if backend != "postgresql":
        pytest.skip("SQLite's connections take the greenlet's way (tested above)")
    return database_url


async def test_a_connection_past_its_recycle_age_is_opened_again(postgresql_url: str) -> None:
    async with _probe_table(postgresql_url, pool_size=1, max_overflow=0, pool_recycle=1) as engine:
        observer = create_async_engine(postgresql_url)
        before = await server_connections(observer)
        sessions = _sessions(engine)
        async with sessions() as session:
            await session.connection()
            await session.commit()
        await asyncio.sleep(1.2)
        async with sessions() as session:
            with greenlet_switches() as switches:
                await session.connection()
            assert switches, "reopening the connection awaits the driver, in a greenlet"
            session.add(_Probe(id=1, note="after recycle"))
            await session.commit()
        assert await _notes(engine) == ["after recycle"]
        assert (_pool(engine).checkedin(), _pool(engine).checkedout()) == (1, 0)
        # The old connection closed, not left open beside the new one.
        assert await settled_server_connections(observer, before) == before
        await observer.dispose()


async def test_a_connection_invalidated_while_idle_is_opened_again(postgresql_url: str) -> None:
    async with _probe_table(postgresql_url, pool_size=1, max_overflow=0) as engine:
        pooled = await engine.raw_connection()
        await greenlet_spawn(pooled.invalidate)
        await greenlet_spawn(pooled.close)  # back in the pool, without a connection
        assert _pool(engine).checkedin() == 1
        for n in range(3):
            async with _sessions(engine)() as session:
                session.add(_Probe(id=n, note=f"n{n}"))
                await session.commit()
        assert await _notes(engine) == ["n0", "n1", "n2"]
        assert (_pool(engine).checkedin(), _pool(engine).checkedout()) == (1, 0)


async def test_with_no_idle_connection_the_pool_opens_one_in_a_greenlet(
    postgresql_url: str,
) -> None:
    async with _probe_table(postgresql_url, pool_size=1, max_overflow=1) as engine:
        sessions = _sessions(engine)
        async with sessions() as holder, sessions() as other:
            await holder.connection()  # the pool's only idle connection, held
            with greenlet_switches() as switches:
                await other.connection()  # an overflow connection, opened
            assert switches
            other.add(_Probe(id=1, note="overflow"))
            await other.commit()
            await holder.commit()
        assert await _notes(engine) == ["overflow"]
        assert (_pool(engine).checkedin(), _pool(engine).checkedout()) == (1, 0)
