"""The audit chain: verify it, and take signed checkpoints to keep elsewhere."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.base import (
    audit_cli,
    with_session,
)


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

    report = with_session(work)
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
        report, line = with_session(work)
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
