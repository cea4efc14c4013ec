"""Hot writes (app/core/hot_read.py::HotWrite) run their INSERT straight on PostgreSQL's driver,
inside the session's transaction: the row must commit and roll back with the session even when
the hot write is the transaction's first statement, a driver error must be raised as Core's
execute raises it, and a connection that broke under one must leave the pool."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, InvalidRequestError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import Database, utcnow
from app.core.hot_read import HotWrite
from app.systems.models import System
from tests.databases import fresh_database, terminate_other_connections

_SYSTEMS: Any = System.__table__
# Every column bound: a hot write computes no Python-side default.
_ADD_SYSTEM = HotWrite(
    insert(_SYSTEMS).values({column.key: bindparam(column.key) for column in _SYSTEMS.columns})
)


def _system(key: str) -> dict[str, Any]:
    now = utcnow()
    return {
        "key": key,
        "name": key.title(),
        "owner": None,
        "description": None,
        "webhook_url": None,
        "webhook_signature_scheme": "v1",
        "push_records_due": False,
        "created_at": now,
        "updated_at": now,
        "version": 1,
    }


async def _keys(session: AsyncSession) -> set[str]:
    return set(await session.scalars(select(System.key)))


async def test_a_hot_write_commits_and_rolls_back_with_its_session(
    backend: str, tmp_path: Path
) -> None:
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        async with database.sessionmaker() as session:
            # The transaction's first statement: it must still be inside the transaction.
            await _ADD_SYSTEM.execute(await session.connection(), _system("dropped"))
            assert "dropped" in await _keys(session)  # the session sees its own write
            await session.rollback()
        async with database.sessionmaker() as session:
            await _ADD_SYSTEM.execute(await session.connection(), _system("kept"))
            await session.execute(text("SELECT 1"))  # Core's statements share the transaction
            await session.commit()
        async with database.sessionmaker() as session:
            assert await _keys(session) == {"kept"}
            (stored,) = await session.scalars(select(System).where(System.key == "kept"))
            assert stored.created_at.tzinfo is not None  # bound as the column's type binds it
        await database.dispose()


async def test_a_hot_write_raises_what_cores_execute_raises(backend: str, tmp_path: Path) -> None:
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        async with database.sessionmaker() as session:
            await _ADD_SYSTEM.execute(await session.connection(), _system("accounts"))
            await session.commit()
        raised: dict[str, BaseException] = {}
        for way in ("core", "hot"):
            async with database.sessionmaker() as session:
                connection = await session.connection()
                with pytest.raises(DBAPIError) as caught:
                    if way == "core":
                        await connection.execute(_ADD_SYSTEM.statement, _system("accounts"))
                    else:
                        await _ADD_SYSTEM.execute(connection, _system("accounts"))
                raised[way] = caught.value
                await session.rollback()
                await session.execute(text("SELECT 1"))  # the session goes on after a rollback
        await database.dispose()
    assert type(raised["hot"]) is type(raised["core"]) is IntegrityError
    assert not raised["hot"].connection_invalidated
    assert "accounts" not in str(raised["hot"])  # bound values stay out of the message


async def test_a_hot_write_missing_a_value_is_refused_as_core_refuses_it(
    backend: str, tmp_path: Path
) -> None:
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        async with database.sessionmaker() as session:
            row = _system("accounts")
            del row["owner"]
            with pytest.raises(StatementError) as refused:
                await _ADD_SYSTEM.execute(await session.connection(), row)
        assert isinstance(refused.value.orig, InvalidRequestError)
        assert "'owner'" in str(refused.value)
        await database.dispose()


def test_a_hot_write_refuses_a_statement_that_leaves_a_python_default() -> None:
    statement = insert(_SYSTEMS).values(key=bindparam("key"), name=bindparam("name"))
    with pytest.raises(ValueError, match="created_at"):
        HotWrite(statement)


@pytest.mark.parametrize("begun", [False, True], ids=["first-statement", "after-a-statement"])
async def test_a_connection_broken_under_a_hot_write_leaves_the_pool(
    backend: str, tmp_path: Path, begun: bool
) -> None:
    if backend != "postgresql":
        pytest.skip("an embedded SQLite database has no server connection to terminate")
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url, pool_size=1)
        async with database.sessionmaker() as session:
            await session.execute(text("SELECT 1"))  # the pool now holds one connection
        async with database.sessionmaker() as session:
            connection = await session.connection()
            if begun:
                await session.execute(text("SELECT 1"))
            assert await terminate_other_connections(url)
            with pytest.raises(DBAPIError) as caught:
                await _ADD_SYSTEM.execute(connection, _system("lost"))
            await session.rollback()
        assert caught.value.connection_invalidated
        async with database.sessionmaker() as session:  # a new connection, and it writes
            await _ADD_SYSTEM.execute(await session.connection(), _system("written"))
            await session.commit()
        async with database.sessionmaker() as session:
            assert await _keys(session) == {"written"}
        await database.dispose()


async def test_a_hot_write_cancelled_midway_leaves_no_connection_that_loses_commits(
    backend: str, tmp_path: Path
) -> None:
    """A request cancelled while its hot write waits on the database (a client gone, a
    shutdown): whatever the driver was left in (a BEGIN cut short leaves asyncpg's own
    transaction marker set, and the next BEGIN would become a savepoint that never commits),
    the next transaction on the pool commits."""
    if backend != "postgresql":
        pytest.skip("SQLite's writes are not awaited on a server")
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url, pool_size=1)
        observer = Database.from_url(url)
        for yields in range(8):  # cancelled at each point its awaits reach
            async with database.sessionmaker() as session:
                connection = await session.connection()
                task = asyncio.ensure_future(
                    _ADD_SYSTEM.execute(connection, _system(f"cut-{yields}"))
                )
                for _ in range(yields):
                    await asyncio.sleep(0)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, DBAPIError):
                    await task
            async with database.sessionmaker() as session:
                await session.execute(_ADD_SYSTEM.statement, _system(f"after-{yields}"))
                await session.commit()
            async with observer.sessionmaker() as session:
                assert f"after-{yields}" in await _keys(session), yields
        await observer.dispose()
        await database.dispose()
