"""The command line's shared pieces: the Typer app and its command groups, and one committed
session against the configured database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import typer

from app.core.config import get_settings
from app.core.db import Database
from app.core.session import after_commit
from app.core.startup import preflight

T = TypeVar("T")
cli = typer.Typer(help="spix-dsr: the data-subject-rights service of Spix.", no_args_is_help=True)
keys_cli = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
audit_cli = typer.Typer(help="The audit log.", no_args_is_help=True)
cli.add_typer(keys_cli, name="keys")
cli.add_typer(audit_cli, name="audit")
import_cli = typer.Typer(help="Bulk imports.", no_args_is_help=True)
cli.add_typer(import_cli, name="import")
identities_cli = typer.Typer(help="Stored identity hashes.", no_args_is_help=True)
cli.add_typer(identities_cli, name="identities")
idempotency_cli = typer.Typer(help="Stored Idempotency-Key answers.", no_args_is_help=True)
cli.add_typer(idempotency_cli, name="idempotency")
receipt_cli = typer.Typer(help="Signed erasure receipts.", no_args_is_help=True)
cli.add_typer(receipt_cli, name="receipt")
ropa_cli = typer.Typer(help="The record of processing activities.", no_args_is_help=True)
cli.add_typer(ropa_cli, name="ropa")

OPENAPI_PATH = Path("openapi/openapi.json")


def with_database(work: Callable[[Database], Awaitable[T]]) -> T:
    """Run `work(database)` against the configured database, migrated, with the audit key."""
    from app.audit.service import use_audit_key
    from app.core.config import ConfigurationError

    settings = get_settings()
    asyncio.run(preflight(settings, hashes=False))  # migrated, or one line saying what to run
    try:
        use_audit_key(settings.resolve_audit_key())  # sealing, linking and verifying need it
    except ConfigurationError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None

    async def run() -> T:
        database = Database.from_url(settings.database_url)
        try:
            return await work(database)
        finally:
            await database.dispose()

    return asyncio.run(run())


def with_session(work: Callable[..., Awaitable[T]]) -> T:
    """Run `work(session)` in one committed transaction against the configured database; the
    audit events it wrote are linked before this returns."""

    async def run(database: Database) -> T:
        async with database.sessionmaker() as session:
            async with session.begin():
                result = await work(session)
            await after_commit(session, database)
            return result

    return with_database(run)
