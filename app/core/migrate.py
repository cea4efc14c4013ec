"""Run Alembic from code: the migrations ship inside the package, so any folder works.

On PostgreSQL the upgrade runs under a session-level advisory lock, on the connection Alembic
migrates with: replicas that start together migrate one after the other, and the ones after
the first find the schema at head and do nothing. A SQLite file is locked the same way, with
an exclusive lock on a file beside it."""

import asyncio
import fcntl
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

from app.core.revisions import migrations_dir

# pg_advisory_lock key of `spix-dsr migrate` (any fixed 64-bit number; "spixdsr" in ASCII).
MIGRATION_LOCK = 0x73706978647372


def alembic_config(database_url: str, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logging"] = False
    if connection is not None:
        config.attributes["connection"] = connection
    return config


async def _upgrade_locked(database_url: str, revision: str) -> None:
    from app.core.db import create_engine

    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            lock: dict[str, Any] = {"key": MIGRATION_LOCK}
            await connection.execute(text("SELECT pg_advisory_lock(:key)"), lock)
            await connection.commit()
            try:

                def run(sync_connection: Connection) -> None:
                    command.upgrade(alembic_config(database_url, sync_connection), revision)

                await connection.run_sync(run)
                await connection.commit()
            finally:
                await connection.rollback()
                await connection.execute(text("SELECT pg_advisory_unlock(:key)"), lock)
                await connection.commit()
    finally:
        await engine.dispose()


def _sqlite_file(database_url: str) -> Path | None:
    from app.core.schema_state import sqlite_file

    return sqlite_file(database_url)


def upgrade(database_url: str, revision: str = "head") -> None:
    if database_url.startswith("postgresql"):
        asyncio.run(_upgrade_locked(database_url, revision))
        return
    path = _sqlite_file(database_url)
    if path is None:  # in memory: one process only
        command.upgrade(alembic_config(database_url), revision)
        return
    with open(path.with_name(path.name + ".migrate-lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def check(database_url: str) -> None:
    """Raises when the models and the newest migration disagree."""
    command.check(alembic_config(database_url))
