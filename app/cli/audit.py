"""The audit chain: verify it, link what waits, and take signed checkpoints to keep elsewhere."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.base import (
    audit_cli,
    with_database,
    with_session,
)


def _link() -> tuple[int, int]:
    """Link every committed event still waiting; (linked, refused)."""
    from app.audit.chain import chain_pending
    from app.core.db import Database

    async def work(database: Database) -> tuple[int, int]:
        done = await chain_pending(database)
        return done.linked, done.refused

    return with_database(work)


@audit_cli.command("chain")
def audit_chain() -> None:
    """Link the committed events still waiting to be linked into the chain. The API links
    a request's events before it answers and the worker every round; this is for a
    deployment without a worker, or before a downgrade."""
    linked, refused = _link()
    typer.echo(f"linked {linked} events")
    if refused:
        typer.echo(
            f"{refused} waiting events do not carry their seal under this audit key and stay "
            "unlinked: `spix-dsr audit verify` names the first",
            err=True,
        )
        raise typer.Exit(1)


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
    """Walk the hash chain end to end (or from a checkpoint) and name the first broken link;
    count the events committed after it that wait to be linked, and check their seals."""
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
        if report.pending:
            typer.echo(
                f"{report.pending} events committed after the head wait to be linked (sealed, "
                "not chained yet; `spix-dsr audit chain` links them)"
            )
        return
    if report.broken_at_seq is None:
        typer.echo(
            f"audit chain intact: {report.checked} events; but event {report.broken_event_id}, "
            f"after {report.pending} waiting ones, is not trustworthy: {report.reason}",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(
        f"audit chain broken at seq {report.broken_at_seq} "
        f"(event {report.broken_event_id}): {report.reason}; {report.checked} events before it "
        "are intact",
        err=True,
    )
    raise typer.Exit(1)


@audit_cli.command("checkpoint")
def audit_checkpoint() -> None:
    """Link what waits, verify the chain, then print its signed head: store the line outside
    this database."""
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.audit.checkpoint import InvalidCheckpoint, take_checkpoint
    from app.audit.service import ChainReport, verify_chain

    async def work(session: AsyncSession) -> tuple[ChainReport, str | None]:
        report = await verify_chain(session)
        if not report.ok:
            return report, None
        return report, await take_checkpoint(session)

    _link()  # the checkpoint then covers every event committed before it
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
