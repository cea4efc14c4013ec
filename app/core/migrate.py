"""Run Alembic from code: the migrations ship inside the package, so any folder works."""

from pathlib import Path

from alembic import command
from alembic.config import Config

import app

_PACKAGED = Path(app.__file__).resolve().parent / "_migrations"
_SOURCE = Path(app.__file__).resolve().parent.parent / "migrations"


def migrations_dir() -> Path:
    return _PACKAGED if _PACKAGED.is_dir() else _SOURCE


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logging"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def check(database_url: str) -> None:
    """Raises when the models and the newest migration disagree."""
    command.check(alembic_config(database_url))
