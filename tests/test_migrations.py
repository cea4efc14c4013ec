"""The migrations build the schema the models describe, and run down and up cleanly."""

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from app.core.db import Database, UTCDateTime
from app.core.migrate import alembic_config, check, downgrade, upgrade
from app.retention import engine
from tests.builders import make_category, make_controller, make_rule, make_system
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


async def test_ranked_rules_migration_keeps_each_records_explanation(
    backend: str, tmp_path: Path
) -> None:
    """Upgrading gives existing profiles their ranked rules and puts event times in one UTC
    shape; downgrading writes each record's explanation back."""
    before = "c71c55f9488c"
    profiles = sa.table(
        "record_profiles",
        *(sa.column(n) for n in ("fingerprint", "system", "region")),
        *(sa.column(n, sa.JSON()) for n in ("categories", "purposes")),
        sa.column("id", sa.Uuid()),
        sa.column("controller_id", sa.Uuid()),
    )
    records = sa.table(
        "records",
        *(sa.column(n) for n in ("system", "record_ref", "state", "action", "held")),
        sa.column("keep_indefinitely"),
        *(sa.column(n, sa.JSON()) for n in ("events", "retention")),
        sa.column("id", sa.Uuid()),
        sa.column("controller_id", sa.Uuid()),
        sa.column("profile_id", sa.Uuid()),
        *(sa.column(n, UTCDateTime()) for n in ("collected_at", "created_at", "updated_at")),
        sa.column("delete_by", UTCDateTime()),
    )
    async with fresh_database(backend, tmp_path, migrate=False) as url:
        await asyncio.to_thread(upgrade, url, before)
        database = Database.from_url(url)
        try:
            async with database.sessionmaker() as session:
                controller = await make_controller(session, kind="platform", name="Spix")
                await make_system(session, "support")
                await make_category(session, "support.ticket")
                rule = await make_rule(session, kind="maximum", period="P1M", category="support")
                profile_id, record_id = uuid.uuid4(), uuid.uuid4()
                collected = datetime(2024, 1, 31, 9, tzinfo=UTC)
                await session.execute(
                    profiles.insert().values(
                        id=profile_id,
                        fingerprint="f" * 64,
                        controller_id=controller.id,
                        system="support",
                        region=None,
                        categories=["support.ticket"],
                        purposes=[],
                    )
                )
                await session.execute(
                    records.insert().values(
                        id=record_id,
                        system="support",
                        record_ref="t-1",
                        controller_id=controller.id,
                        profile_id=profile_id,
                        collected_at=collected,
                        created_at=collected,
                        updated_at=collected,
                        state="active",
                        held=False,
                        keep_indefinitely=False,
                        delete_by=datetime(2024, 2, 29, 9, tzinfo=UTC),
                        action="delete",
                        events={"closed": "2024-03-01T10:00:00+02:00"},
                        retention={},
                    )
                )
                await session.commit()

            await asyncio.to_thread(upgrade, url)
            async with database.sessionmaker() as session:
                ranked, events = (
                    await session.execute(
                        sa.text(
                            "SELECT p.ranked_rules, r.events FROM records r "
                            "JOIN record_profiles p ON p.id = r.profile_id"
                        )
                    )
                ).one()
                group = engine.decode_ranked(ranked)
                assert [r.id for r in group.maximum] == [str(rule.id)]
                stored = events if isinstance(events, dict) else orjson.loads(events)
                assert stored == {"closed": "2024-03-01T08:00:00.000000+00:00"}

            await asyncio.to_thread(downgrade, url, before)
            async with database.sessionmaker() as session:
                raw = await session.scalar(sa.text("SELECT retention FROM records"))
                explained = raw if isinstance(raw, dict) else orjson.loads(raw)
                assert explained["holds"] == []
                (outcome,) = explained["rules"]
                assert outcome["id"] == str(rule.id) and outcome["decisive"] is True
                assert datetime.fromisoformat(outcome["ends_at"]) == datetime(
                    2024, 2, 29, 9, tzinfo=UTC
                )
        finally:
            await database.dispose()
