"""Stored data: bulk imports, identity hash versions, idempotency rows, erasure receipts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from app.cli.base import (
    idempotency_cli,
    identities_cli,
    import_cli,
    receipt_cli,
    with_session,
)
from app.core.config import get_settings
from app.core.db import Database
from app.core.startup import preflight


@identities_cli.command("versions")
def identities_versions(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Count stored identity hashes per normalisation version: a legacy version may leave
    SPIX_DSR_IDENTITY_LEGACY_VERSIONS once no hash is stored under it alone."""
    from app.core.identity import LEGACY_VERSIONS
    from app.identities.service import version_report

    report = with_session(version_report)
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
        return
    for table, counts in report.counts.items():
        for (version, kind), n in sorted(counts.items()):
            typer.echo(f"{table:<24} v{version} {kind:<10} {n:>10}")
    for version in sorted(LEGACY_VERSIONS):
        left = report.legacy_only(version)
        if left:
            typer.echo(
                f"{left} hashes are stored under version {version} only: keep {version} in the "
                "legacy list (sha256 identities do not find them until re-registered)"
            )
        else:
            typer.echo(
                f"no hash is stored under version {version} only: "
                f"{version} may leave the legacy list"
            )


@idempotency_cli.command("purge")
def idempotency_purge() -> None:
    """Delete stored answers older than SPIX_DSR_IDEMPOTENCY_TTL_HOURS (in batches)."""
    from datetime import timedelta

    from app.core.idempotency import purge_expired

    settings = get_settings()
    ttl = timedelta(hours=settings.idempotency_ttl_hours)

    async def run() -> int:
        await preflight(settings, hashes=False)
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
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="JSON Lines: one record body per line")
    ],
    batch_size: Annotated[int, typer.Option(min=1, max=1000)] = 1000,
) -> None:
    """Register the records of a JSON Lines file, streamed in batches; a record_ref given
    twice is registered in file order (the later line updates), whatever the batch size."""
    from app.core.identity import BlindIndexer
    from app.records.import_progress import ImportProgress, import_progress
    from app.records.importer import import_records as run_import

    if not file.is_file():
        typer.echo(f"{file}: no such file", err=True)
        raise typer.Exit(2)
    settings = get_settings()

    async def run() -> object:
        # Migrated, and the subject key is the one the database's identities are stored under.
        key = await preflight(settings, hashes=True)
        assert key is not None
        indexer = BlindIndexer(
            key,
            settings.subject_key_id,
            settings.default_phone_region,
            settings.identity_legacy_versions,
        )
        database = Database.from_url(settings.database_url)
        try:
            with import_progress() as progress:
                return await run_import(
                    database,
                    indexer,
                    file,
                    batch_size=batch_size,
                    progress=ImportProgress(progress, file.stat().st_size),
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


@receipt_cli.command("verify")
def receipt_verify(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="The receipt, as GET /v1/requests/{id}/receipt")
    ],
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="The published key set (JWKS): a file, or the URL of "
            "/.well-known/spix-dsr/receipt-keys. Default: this install's own key",
        ),
    ] = None,
) -> None:
    """Check a receipt's signature offline: exit 0 when it is valid, 1 when it is not."""
    import urllib.request

    from app.core import signing

    try:
        document = json.loads(file.read_bytes())
        if key is None:
            signer = signing.Signer.from_material(get_settings().resolve_receipt_key())
            jwks = signer.jwks()
        elif key.startswith(("https://", "http://")):
            with urllib.request.urlopen(key, timeout=10) as answer:  # noqa: S310 (http/https)
                jwks = json.loads(answer.read())
        else:
            jwks = json.loads(Path(key).read_bytes())
    except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: no key configured
        typer.echo(f"receipt not verified: {exc}", err=True)
        raise typer.Exit(1) from None
    problem = signing.verify(document, signing.keys_from_jwks(jwks))
    if problem is not None:
        typer.echo(f"receipt NOT valid: {problem}", err=True)
        raise typer.Exit(1)
    request_id = document["receipt"].get("request_id")
    typer.echo(f"receipt valid: request {request_id}, signed by key {document['kid']}")
