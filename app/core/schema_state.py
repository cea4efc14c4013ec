"""Is a database migrated? Asked before a command touches any table, without creating
anything: a SQLite file that does not exist stays absent, and an existing one is opened
read-only."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.core.revisions import head_revisions, known_revisions


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database or an in-memory one)."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:") or parsed.query.get("mode") == "memory":
        return None
    return Path(database)


async def applied_revisions(url: str) -> set[str] | None:
    """The revisions in alembic_version; None when there is no such table (or no file)."""
    path = sqlite_file(url)
    if path is not None:
        if not path.is_file():
            return None
        # Read-only: a look must not turn an empty file into a database or switch its journal.
        url = f"sqlite+aiosqlite:///file:{path.resolve()}?mode=ro&uri=true"
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:

            def has_table(sync_connection: object) -> bool:
                from sqlalchemy import inspect

                return bool(inspect(sync_connection).has_table("alembic_version"))

            if not await connection.run_sync(has_table):
                return None
            rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
            return {row[0] for row in rows}
    finally:
        await engine.dispose()


async def migration_problem(url: str, where: str) -> str | None:
    """One line saying why this database cannot be used yet, or None when it is at head."""
    try:
        applied = await applied_revisions(url)
    except (DBAPIError, OSError) as exc:
        reason = type(getattr(exc, "orig", None) or exc).__name__
        return f"cannot read the database at {where} ({reason}): is it running and reachable?"
    heads = set(head_revisions())
    if not applied:
        return f"the database at {where} is not migrated: run `spix-dsr migrate`"
    if applied == heads:
        return None
    if applied - known_revisions():
        return (
            f"the database at {where} is at revision {', '.join(sorted(applied))}, which this "
            "version of spix-dsr does not know (a newer version migrated it)"
        )
    return (
        f"the database at {where} is not at the newest migration "
        f"({', '.join(sorted(applied))}, newest {', '.join(sorted(heads))}): run `spix-dsr migrate`"
    )
