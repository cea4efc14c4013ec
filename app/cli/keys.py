"""API keys from the command line (the first admin key, and keys for systems and controllers)."""

from __future__ import annotations

import json
import uuid
from typing import Annotated

import typer

from app.cli.base import (
    keys_cli,
    with_session,
)


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
    from app.audit.service import OPERATOR
    from app.auth.keys import create_api_key
    from app.core.errors import AppError

    try:
        controller_id = uuid.UUID(controller) if controller else None
    except ValueError:
        typer.echo("--controller must be a controller id (a UUID)", err=True)
        raise typer.Exit(2) from None

    async def work(session: object) -> tuple[str, str]:
        from sqlalchemy.ext.asyncio import AsyncSession

        assert isinstance(session, AsyncSession)
        created = await create_api_key(
            session, OPERATOR, role=role, name=name, system_key=system, controller_id=controller_id
        )
        return str(created.api_key.id), created.secret

    try:
        key_id, secret = with_session(work)
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

    keys = with_session(list_keys)
    for key in keys:
        state = "revoked" if key.revoked_at else "active"
        binding = key.system_key or (str(key.controller_id) if key.controller_id else "-")
        typer.echo(f"{key.id}  {key.role:<10} {binding:<36} {state:<7} {key.name or ''}")


@keys_cli.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="The key's id")],
) -> None:
    """Revoke an API key (other processes stop accepting it within the key cache time)."""
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.audit.service import OPERATOR
    from app.auth.keys import revoke_api_key
    from app.core.errors import AppError

    try:
        parsed = uuid.UUID(key_id)
    except ValueError:
        typer.echo("not a key id", err=True)
        raise typer.Exit(2) from None

    async def work(session: AsyncSession) -> None:
        await revoke_api_key(session, OPERATOR, parsed)

    try:
        with_session(work)
    except AppError as exc:
        typer.echo(exc.detail, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"revoked {parsed}")
