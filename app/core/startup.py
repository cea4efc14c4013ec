"""Checks a process makes before it uses a database: migrated, and (for anything that hashes
identities) holding the subject key the database's identities are stored under."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import ConfigurationError, Environment, Settings
from app.core.db import create_engine
from app.core.schema_state import migration_problem
from app.core.service_identity import (
    SubjectKeyMismatch,
    check_subject_key,
    mismatch_message,
    stored_identity,
)


class NotMigrated(ConfigurationError):
    """The database is absent, empty or not at the newest migration."""


def banner(settings: Settings) -> str:
    """What a process runs against: printed at `serve` and `migrate` start (no secrets)."""
    return (
        f"data dir {settings.data_dir} | database {settings.database_display} | "
        f"subject key {settings.subject_key_id!r} from {settings.subject_key_source}"
    )


async def require_migrated(settings: Settings) -> None:
    problem = await migration_problem(settings.database_url, settings.database_display)
    if problem is not None:
        raise NotMigrated(problem)


async def record_or_check_subject_key(engine: AsyncEngine, settings: Settings, key: bytes) -> None:
    """Record the key on a database that has none; refuse a different one."""
    async with engine.connect() as connection:
        await check_subject_key(
            connection,
            settings.subject_key_id,
            key,
            where=settings.database_display,
            source=settings.subject_key_source,
        )
        await connection.commit()


async def subject_key_for(settings: Settings) -> bytes:
    """The subject key, checked against the (migrated) database. A development key that does
    not exist yet is created only when the database has no identities' key recorded: a
    command run with another data folder must not mint a second key."""
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        if (
            not settings.subject_key
            and settings.env is Environment.development
            and not (settings.data_dir / "subject.key").exists()
        ):
            async with engine.connect() as connection:
                stored = await stored_identity(connection)
            if stored is not None:
                raise SubjectKeyMismatch(
                    mismatch_message(
                        stored[0],
                        settings.database_display,
                        settings.subject_key_id,
                        f"{settings.subject_key_source}, which does not exist",
                    )
                )
        key = settings.resolve_subject_key()
        await record_or_check_subject_key(engine, settings, key)
        return key
    finally:
        await engine.dispose()


async def preflight(settings: Settings, *, hashes: bool) -> bytes | None:
    """Refuse (ConfigurationError) an unmigrated database, and when the command hashes
    identities, a subject key other than the database's; returns that key."""
    await require_migrated(settings)
    if not hashes:
        return None
    try:
        return await subject_key_for(settings)
    except DBAPIError as exc:
        raise ConfigurationError(
            f"cannot read the database at {settings.database_display} ({type(exc.orig).__name__})"
        ) from None


async def guard_subject_key(engine: AsyncEngine, settings: Settings, key: bytes) -> None:
    """At application start: check (or record) the subject key when the schema is at head;
    a database not migrated yet is /readyz's to report."""
    if await migration_problem(settings.database_url, settings.database_display) is None:
        await record_or_check_subject_key(engine, settings, key)
