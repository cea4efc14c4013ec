"""The record of processing activities, exported without the API: for an operator's files,
or for a Fides import (`fides push`) where the service is not reachable."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from app.cli.base import ropa_cli, with_session


class ExportFormat(StrEnum):
    json = "json"
    csv = "csv"
    fideslang = "fideslang"


async def render(session: AsyncSession, export_format: ExportFormat) -> str:
    """The same document `GET /v1/ropa` answers in this format."""
    from app.ropa import fides_export, service

    if export_format is ExportFormat.fideslang:
        manifest = await fides_export.build_fides_manifest(session)
        return fides_export.manifest_json(manifest).decode()
    ropa = await service.build_ropa(session)
    if export_format is ExportFormat.csv:
        return service.ropa_csv(ropa)
    return ropa.model_dump_json(indent=2)


@ropa_cli.command("export")
def ropa_export(
    export_format: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            help="json (the RoPA), csv (a row per purpose and rule), or fideslang (a manifest "
            "for Fides: save it as .yml and `fides push` it)",
        ),
    ] = ExportFormat.json,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of to stdout")
    ] = None,
) -> None:
    """Export the record of processing activities, as an admin reads it."""
    text = with_session(lambda session: render(session, export_format))
    if output is None:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    output.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {output}", err=True)
