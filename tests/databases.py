"""Test databases: a fresh SQLite file or a fresh PostgreSQL database, built by the migrations."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import greenlet
import httpx
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.core.migrate import upgrade
from tests.builders import TEST_SUBJECT_KEY

POSTGRES_URL = os.environ.get("SPIX_DSR_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]


async def _admin_execute(statement: str) -> None:
    assert POSTGRES_URL is not None
    engine = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def terminate_other_connections(url: str) -> int:
    """Terminate every other session on this PostgreSQL database (a server restart, as the
    pool sees it); returns how many there were."""
    killer = create_async_engine(url)
    try:
        async with killer.connect() as connection:
            terminated = await connection.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    finally:
        await killer.dispose()
    return int(terminated or 0)


@asynccontextmanager
async def fresh_database(backend: str, folder: Path, *, migrate: bool = True) -> AsyncIterator[str]:
    """Yield the URL of an empty database of this backend; drop it afterwards."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{folder / f'{uuid.uuid4().hex}.db'}"
        if migrate:
            await asyncio.to_thread(upgrade, url)
        yield url
        return
    assert POSTGRES_URL is not None, "set SPIX_DSR_TEST_POSTGRES_URL to test on PostgreSQL"
    name = f"spix_dsr_test_{uuid.uuid4().hex[:12]}"
    await _admin_execute(f'CREATE DATABASE "{name}"')
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        if migrate:
            await asyncio.to_thread(upgrade, url)
        yield url
    finally:
        await _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_cli(url: str, data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`spix-dsr ARGS` in a process of its own, against this database."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env={
            **os.environ,
            "SPIX_DSR_DATABASE_URL": url,
            "SPIX_DSR_DATA_DIR": str(data_dir),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@asynccontextmanager
async def statements_sent(database: Any, sink: Callable[[str, Any], None]) -> AsyncIterator[None]:
    """Call `sink(sql, parameters)` for every statement the database's engine sends: through
    SQLAlchemy (its cursor event) and straight on PostgreSQL's driver (the hot reads of
    app/core/hot_read.py, seen by asyncpg's query logger on each new connection)."""
    engine = database.engine.sync_engine

    def through_sqlalchemy(*args: Any) -> None:
        _conn, _cursor, statement, parameters, _context, many = args
        if not many:
            sink(statement, parameters)

    def on_connect(connection: Any, _record: Any) -> None:
        if engine.dialect.name == "postgresql":
            connection.driver_connection.add_query_logger(
                lambda logged: sink(logged.query, tuple(logged.args))
            )

    await database.engine.dispose()  # new connections, each with the driver's logger
    event.listen(engine, "before_cursor_execute", through_sqlalchemy)
    event.listen(engine, "connect", on_connect)
    try:
        yield
        # asyncpg calls its query loggers soon after a statement, not during it.
        await asyncio.sleep(0)
    finally:
        event.remove(engine, "before_cursor_execute", through_sqlalchemy)
        event.remove(engine, "connect", on_connect)


@contextmanager
def greenlet_switches() -> Iterator[list[str]]:
    """Every greenlet switch while inside (SQLAlchemy runs its synchronous code in one)."""
    seen: list[str] = []
    previous = greenlet.settrace(lambda event, _args: seen.append(event))
    try:
        yield seen
    finally:
        greenlet.settrace(previous)


async def server_connections(engine: AsyncEngine) -> int:
    """Connections the PostgreSQL server holds to this database, other than the asking one."""
    async with engine.connect() as connection:
        found = await connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    return int(found or 0)


async def settled_server_connections(engine: AsyncEngine, expected: int) -> int:
    """The same, once a closing connection has had a second to leave the server's view."""
    for _ in range(20):
        if await server_connections(engine) == expected:
            break
        await asyncio.sleep(0.05)
    return await server_connections(engine)


async def plans_chosen(
    database: Any, statements: list[tuple[str, Any]]
) -> AsyncIterator[tuple[str, str, list[str], int]]:
    """The plan each statement runs with once the plan cache has chosen, then its generic and
    its custom plan forced: whichever PostgreSQL picks must be an index plan. (EXPLAIN with
    bound values would plan for those values whatever plan_cache_mode says: a custom plan.)"""
    async with database.engine.connect() as connection:
        for number, (statement, params) in enumerate(statements):
            values = ", ".join(sql_literal(value) for value in params)
            for mode in ("auto", "force_generic_plan", "force_custom_plan"):
                name = f"checked_{number}_{mode}"
                await connection.exec_driver_sql(f"SET plan_cache_mode = {mode}")
                await connection.exec_driver_sql(f"PREPARE {name} AS {statement}")
                for _ in range(6):
                    await connection.exec_driver_sql(f"EXECUTE {name}({values})")
                explained = await connection.exec_driver_sql(f"EXPLAIN EXECUTE {name}({values})")
                generic = await connection.exec_driver_sql(
                    "SELECT generic_plans FROM pg_prepared_statements "
                    f"WHERE name = '{name.lower()}'"
                )
                yield mode, statement, list(explained.scalars().all()), generic.scalar_one()
            await connection.exec_driver_sql("SET plan_cache_mode = auto")


def sql_literal(value: Any) -> str:
    """A test's own values as SQL text (EXECUTE takes no bound parameters)."""
    if value is None:
        return "NULL"
    if isinstance(value, list | tuple):
        return "ARRAY[" + ", ".join(sql_literal(v) for v in value) + "]"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, uuid.UUID):
        return f"'{value}'::uuid"
    return "'" + str(value).replace("'", "''") + "'"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_process(
    url: str, data_dir: Path, port: int, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`spix-dsr serve` in a process of its own against this database; killed at the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        env={
            **os.environ,
            "SPIX_DSR_DATABASE_URL": url,
            "SPIX_DSR_SUBJECT_KEY": TEST_SUBJECT_KEY,
            "SPIX_DSR_DATA_DIR": str(data_dir),
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


async def wait_ready(base: str) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        for _ in range(300):
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the server never became ready")
