"""The `spix-dsr` command."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from app.core.config import get_settings
from app.core.db import Database

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

OPENAPI_PATH = Path("openapi/openapi.json")


def _with_session(work: Callable[..., Awaitable[T]]) -> T:
    """Run `work(session)` in one committed transaction against the configured database."""
    from app.audit.service import use_audit_key
    from app.core.config import ConfigurationError

    settings = get_settings()
    try:
        use_audit_key(settings.resolve_audit_key())  # chaining and verifying events need it
    except ConfigurationError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None

    async def run() -> T:
        database = Database.from_url(settings.database_url)
        try:
            async with database.sessionmaker() as session, session.begin():
                return await work(session)
        finally:
            await database.dispose()

    return asyncio.run(run())


@cli.command()
def migrate() -> None:
    """Upgrade the configured database to the newest revision."""
    from app.core.migrate import upgrade

    upgrade(get_settings().database_url)
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

    from app.taxonomy.service import InvalidTaxonomy, SeedReport, load_taxonomy, read_taxonomy

    async def work(session: AsyncSession) -> SeedReport:
        return await load_taxonomy(session, data)

    try:
        data = read_taxonomy(file)
        report = _with_session(work)
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
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
) -> None:
    """Serve the API."""
    import uvicorn

    settings = get_settings()
    settings.resolve_subject_key()  # fail here, with the reason, rather than in a worker
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


@cli.command()
def worker() -> None:
    """Deliver webhooks from the outbox (run beside `serve`; any number on PostgreSQL)."""
    from app.core.logging import configure_logging
    from app.worker.runner import run_worker

    settings = get_settings()
    settings.resolve_subject_key()  # fail here, with the reason
    configure_logging(settings.log_level)
    asyncio.run(run_worker(settings))


@keys_cli.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="admin, auditor, system or controller")],
    system: Annotated[str | None, typer.Option(help="The system a system key writes")] = None,
    controller: Annotated[
        str | None, typer.Option(help="The controller id a controller key acts for")
    ] = None,
    name: Annotated[str | None, typer.Option(help="What the key is for")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line")] = False,
) -> None:
    """Create an API key; the key is shown once."""
    from app.audit.service import OPERATOR, record
    from app.auth.service import create_key
    from app.core.errors import AppError

    try:
        controller_id = uuid.UUID(controller) if controller else None
    except ValueError:
        typer.echo("--controller must be a controller id (a UUID)", err=True)
        raise typer.Exit(2) from None

    async def work(session: object) -> tuple[str, str]:
        from sqlalchemy.ext.asyncio import AsyncSession

        assert isinstance(session, AsyncSession)
        created = await create_key(
            session, role=role, name=name, system_key=system, controller_id=controller_id
        )
        record(
            session,
            OPERATOR,
            "api_key.created",
            "api_key",
            created.api_key.id,
            {"role": role, "system": system, "controller_id": controller},
        )
        return str(created.api_key.id), created.secret

    try:
        key_id, secret = _with_session(work)
    except AppError as exc:
        typer.echo(exc.detail, err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps({"id": key_id, "key": secret, "role": role}))
    else:
        typer.echo(f"id:   {key_id}\nrole: {role}\nkey:  {secret}\n(shown once: store it now)")


@keys_cli.command("list")
def keys_list() -> None:
    """List API keys (never their secrets)."""
    from app.auth.service import list_keys

    keys = _with_session(list_keys)
    for key in keys:
        state = "revoked" if key.revoked_at else "active"
        binding = key.system_key or (str(key.controller_id) if key.controller_id else "-")
        typer.echo(f"{key.id}  {key.role:<10} {binding:<36} {state:<7} {key.name or ''}")


@keys_cli.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id")]) -> None:
    """Revoke an API key (other processes stop accepting it within the key cache time)."""
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.audit.service import OPERATOR, record
    from app.auth.service import revoke_key
    from app.core.errors import AppError

    try:
        parsed = uuid.UUID(key_id)
    except ValueError:
        typer.echo("not a key id", err=True)
        raise typer.Exit(2) from None

    async def work(session: AsyncSession) -> None:
        await revoke_key(session, parsed)
        record(session, OPERATOR, "api_key.revoked", "api_key", parsed)

    try:
        _with_session(work)
    except AppError as exc:
        typer.echo(exc.detail, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"revoked {parsed}")


@audit_cli.command("verify")
def audit_verify(
    since_checkpoint: Annotated[
        str | None,
        typer.Option(
            "--since-checkpoint",
            help="A checkpoint (its JSON line, or a file holding it): verify from that event "
            "to the head, and fail when the checkpointed event is gone or changed",
        ),
    ] = None,
) -> None:
    """Walk the hash chain end to end (or from a checkpoint) and name the first broken link."""
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.audit.checkpoint import InvalidCheckpoint, read_checkpoint
    from app.audit.service import ChainReport, verify_chain

    try:
        anchor = read_checkpoint(since_checkpoint) if since_checkpoint else None
    except InvalidCheckpoint as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None

    async def work(session: AsyncSession) -> ChainReport:
        return await verify_chain(session, since=anchor)

    report = _with_session(work)
    if report.ok:
        start = f" from seq {anchor.seq} (the checkpoint)" if anchor else ""
        typer.echo(f"audit chain intact{start}: {report.checked} events")
        if report.keyed_from > 1:
            typer.echo(
                f"events before seq {report.keyed_from} were chained before the audit key "
                "(unkeyed links)"
            )
        return
    typer.echo(
        f"audit chain broken at seq {report.broken_at_seq} "
        f"(event {report.broken_event_id}): {report.reason}; {report.checked} events before it "
        "are intact",
        err=True,
    )
    raise typer.Exit(1)


@identities_cli.command("versions")
def identities_versions(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Count stored identity hashes per normalisation version: a legacy version may leave
    SPIX_DSR_IDENTITY_LEGACY_VERSIONS once no hash is stored under it alone."""
    from app.identities.service import version_report

    report = _with_session(version_report)
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
        return
    for table, counts in report.counts.items():
        for (version, kind), n in sorted(counts.items()):
            typer.echo(f"{table:<24} v{version} {kind:<10} {n:>10}")
    left = report.legacy_only(1)
    if left:
        typer.echo(f"{left} hashes are stored under version 1 only: keep 1 in the legacy list")
    else:
        typer.echo("no hash is stored under version 1 only: 1 may leave the legacy list")


@audit_cli.command("checkpoint")
def audit_checkpoint() -> None:
    """Verify the chain, then print its signed head: store the line outside this database."""
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.audit.checkpoint import InvalidCheckpoint, take_checkpoint
    from app.audit.service import ChainReport, verify_chain

    async def work(session: AsyncSession) -> tuple[ChainReport, str | None]:
        report = await verify_chain(session)
        if not report.ok:
            return report, None
        return report, await take_checkpoint(session)

    try:
        report, line = _with_session(work)
    except InvalidCheckpoint as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    if line is None:
        typer.echo(
            f"audit chain broken at seq {report.broken_at_seq}: {report.reason}; no checkpoint",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(line)


@idempotency_cli.command("purge")
def idempotency_purge() -> None:
    """Delete stored answers older than SPIX_DSR_IDEMPOTENCY_TTL_HOURS (in batches)."""
    from datetime import timedelta

    from app.core.idempotency import purge_expired

    settings = get_settings()
    ttl = timedelta(hours=settings.idempotency_ttl_hours)

    async def run() -> int:
        database = Database.from_url(settings.database_url)
        total = 0
        try:
            while True:  # one short transaction per batch
                async with database.sessionmaker() as session, session.begin():
                    deleted = await purge_expired(session, ttl)
                total += deleted
                if not deleted:
                    return total
        finally:
            await database.dispose()

    total = asyncio.run(run())
    typer.echo(f"deleted {total} expired idempotency keys")


@import_cli.command("records")
def import_records(
    file: Annotated[Path, typer.Argument(help="JSON Lines: one record body per line")],
    batch_size: Annotated[int, typer.Option(min=1, max=1000)] = 1000,
) -> None:
    """Register the records of a JSON Lines file, streamed in batches."""
    from rich.progress import Progress

    from app.core.identity import BlindIndexer
    from app.records.importer import import_records as run_import

    if not file.is_file():
        typer.echo(f"{file}: no such file", err=True)
        raise typer.Exit(2)
    settings = get_settings()
    indexer = BlindIndexer(
        settings.resolve_subject_key(),
        settings.subject_key_id,
        settings.default_phone_region,
        settings.identity_legacy_versions,
    )

    async def run() -> object:
        database = Database.from_url(settings.database_url)
        try:
            with Progress(transient=True) as progress:
                task = progress.add_task("importing", total=None)
                return await run_import(
                    database,
                    indexer,
                    file,
                    batch_size=batch_size,
                    progress=lambda n: progress.advance(task, n),
                )
        finally:
            await database.dispose()

    from app.records.importer import ImportReport

    report = asyncio.run(run())
    assert isinstance(report, ImportReport)
    typer.echo(f"created {report.created}, updated {report.updated}, failed {report.failed}")
    for line, message in report.errors:
        typer.echo(f"line {line}: {message}", err=True)
    if report.failed > len(report.errors):
        typer.echo(f"... and {report.failed - len(report.errors)} more failures", err=True)
    if report.failed:
        raise typer.Exit(1)


def render_openapi() -> str:
    from app.core.config import Settings
    from app.main import create_app

    # The document depends only on the code: build it with an in-memory configuration.
    app = create_app(
        Settings(
            database_url="sqlite+aiosqlite:///:memory:", subject_key="x" * 32, audit_key="x" * 32
        )
    )
    return json.dumps(app.openapi(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


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


def main() -> None:
    sys.exit(cli())
