"""The `spix-dsr` command line: one Typer app, its commands in one module per concern."""

from __future__ import annotations

import sys

import typer

from app.cli import audit, data, keys, ropa, service  # noqa: F401  (each registers its commands)
from app.cli.base import cli
from app.cli.service import render_openapi

__all__ = ["cli", "main", "render_openapi"]


def main() -> None:
    from pydantic import ValidationError

    from app.core.config import ConfigurationError

    try:
        sys.exit(cli())
    except ConfigurationError as exc:  # one line saying what is wrong, never a traceback
        typer.echo(f"spix-dsr: {exc}", err=True)
        sys.exit(2)
    except ValidationError as exc:  # a setting the environment gives is invalid
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            typer.echo(f"spix-dsr: {where + ': ' if where else ''}{message}", err=True)
        sys.exit(2)
