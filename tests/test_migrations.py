"""The migrations build the schema the models describe, and run down and up cleanly."""

import asyncio
from pathlib import Path

from alembic.script import ScriptDirectory

from app.core.migrate import alembic_config, check, downgrade, upgrade
from tests.databases import fresh_database


async def test_upgrade_check_downgrade_upgrade(backend: str, tmp_path: Path) -> None:
    async with fresh_database(backend, tmp_path, migrate=False) as url:
        await asyncio.to_thread(upgrade, url)
        await asyncio.to_thread(check, url)  # raises when models and migrations disagree
        await asyncio.to_thread(downgrade, url, "base")
        await asyncio.to_thread(upgrade, url)
        await asyncio.to_thread(check, url)


def test_one_head_and_readable_names() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://"))
    assert len(script.get_heads()) == 1
    for revision in script.walk_revisions():
        path = Path(revision.path)
        assert path.name[:8].isdigit(), f"{path.name} should start with its date"
        assert revision.doc, f"{path.name} should say what it does"
