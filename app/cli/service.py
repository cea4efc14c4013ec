"""Commands that run the service: migrate, seed, bootstrap, serve, and the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from app.cli.base import (
    OPENAPI_PATH,
    cli,
    with_session,
)
from app.core.config import Settings, get_settings
from app.core.startup import preflight


@cli.command()
def migrate() -> None:
    """Upgrade the configured database to the newest revision (replicas may run it at once)."""
    from app.core.config import Environment
    from app.core.migrate import upgrade
    from app.core.schema_state import sqlite_file
    from app.core.startup import banner, subject_key_for

    settings = get_settings()
    typer.echo(banner(settings), err=True)
    path = sqlite_file(settings.database_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    if settings.subject_key or settings.env is Environment.development:
        # Record the subject key on a new database (refuse another one) now, not at first use.
        asyncio.run(subject_key_for(settings))
    typer.echo("database is at the newest revision")


@cli.command()
def seed(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", help="A taxonomy document (default: the Spix default in the package)"
        ),
    ] = None,
) -> None:
    """Load the Spix default taxonomy (idempotent: a second run changes nothing)."""
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.taxonomy.document import InvalidTaxonomy, read_taxonomy
    from app.taxonomy.service import SeedReport, load_taxonomy

    async def work(session: AsyncSession) -> SeedReport:
        return await load_taxonomy(session, data)

    try:
        data = read_taxonomy(file)
        report = with_session(work)
    except InvalidTaxonomy as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    for kind, counts in report.kinds().items():
        typer.echo(
            f"{kind.replace('_', ' '):<20} {counts.created:>4} created {counts.updated:>4} updated "
            f"{counts.unchanged:>4} unchanged"
        )
    typer.echo("taxonomy loaded" if report.changed else "no changes: the registry matches")


@cli.command()
def bootstrap() -> None:
    """Prepare a new deployment from its environment (idempotent; run after `migrate`):
    store SPIX_DSR_BOOTSTRAP_ADMIN_KEY (or the key in SPIX_DSR_BOOTSTRAP_ADMIN_KEY_FILE) as an
    admin key while no active admin key exists, and with SPIX_DSR_SEED_ON_EMPTY=true load the
    Spix default taxonomy into an empty registry."""
    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.auth.bootstrap import Bootstrapped, InvalidBootstrapKey, bootstrap_admin_key
    from app.data_categories.models import DataCategory
    from app.taxonomy.document import read_taxonomy
    from app.taxonomy.service import load_taxonomy

    settings = get_settings()
    key: str | None = None
    if settings.bootstrap_admin_key is not None:
        key = settings.bootstrap_admin_key.get_secret_value()
    elif settings.bootstrap_admin_key_file is not None:
        try:
            key = settings.bootstrap_admin_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            typer.echo(
                f"SPIX_DSR_BOOTSTRAP_ADMIN_KEY_FILE: cannot read "
                f"{settings.bootstrap_admin_key_file} ({exc.strerror})",
                err=True,
            )
            raise typer.Exit(2) from None

    async def work(session: AsyncSession) -> list[str]:
        done = []
        if key is not None:
            outcome = await bootstrap_admin_key(session, key)
            done.append(
                {
                    Bootstrapped.created: "bootstrap admin key stored",
                    Bootstrapped.present: "bootstrap admin key already stored",
                    Bootstrapped.skipped: "an admin key exists: bootstrap admin key not added",
                }[outcome]
            )
        if settings.seed_on_empty:
            if await session.scalar(select(DataCategory.key).limit(1)) is None:
                report = await load_taxonomy(session, read_taxonomy(None))
                created = sum(c.created for c in report.kinds().values())
                done.append(f"registry was empty: Spix default taxonomy loaded ({created} created)")
            else:
                done.append("registry not empty: seed skipped")
        return done

    try:
        for attempt in range(3):
            try:
                done = with_session(work)
                break
            except IntegrityError:  # a replica starting at the same time did it first
                if attempt == 2:
                    raise
    except InvalidBootstrapKey as exc:
        typer.echo(f"SPIX_DSR_BOOTSTRAP_ADMIN_KEY: {exc}", err=True)
        raise typer.Exit(2) from None
    for line in done or ["nothing to bootstrap (no bootstrap key, seed on empty off)"]:
        typer.echo(line)


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
) -> None:
    """Serve the API."""
    import uvicorn

    from app.core.startup import banner

    settings = get_settings()
    typer.echo(banner(settings), err=True)
    # Fail here, with the reason, rather than in a worker: migrated, the database's subject key.
    asyncio.run(preflight(settings, hashes=True))
    settings.resolve_audit_key()
    uvicorn.run(
        "app.main:create_default_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_config=None,
        proxy_headers=True,
    )


def render_openapi() -> str:
    from app.main import create_app

    # The document depends only on the code: build it with an in-memory configuration.
    app = create_app(
        Settings(
            database_url="sqlite+aiosqlite:///:memory:", subject_key="x" * 32, audit_key="x" * 32
        )
    )
    return json.dumps(app.openapi(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


@cli.command()
def worker() -> None:
    """Deliver webhooks from the outbox and run the schedule (beside `serve`; any number on
    PostgreSQL)."""
    from app.core.logging import configure_logging
    from app.worker.runner import run_worker

    settings = get_settings()
    settings.resolve_subject_key()  # fail here, with the reason
    configure_logging(settings.log_level)
    asyncio.run(run_worker(settings))


@cli.command()
def openapi(
    check: Annotated[
        bool, typer.Option("--check", help="Fail when the committed file differs from the code")
    ] = False,
    path: Annotated[Path, typer.Option(help="Where the spec lives")] = OPENAPI_PATH,
) -> None:
    """Write openapi/openapi.json, or check it against the code."""
    rendered = render_openapi()
    if check:
        if not path.exists() or path.read_text(encoding="utf-8") != rendered:
            typer.echo(
                f"{path} differs from the code: run `spix-dsr openapi` and commit it", err=True
            )
            raise typer.Exit(1)
        typer.echo(f"{path} matches the code")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rendered, encoding="utf-8")
    typer.echo(f"wrote {path}")
