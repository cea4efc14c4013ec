"""The migrations build the schema the models describe, and run down and up cleanly."""

import ast
import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from app.core.db import Database, UTCDateTime
from app.core.migrate import alembic_config, check, downgrade, upgrade
from app.legal_holds.models import LegalHold, LegalHoldIdentity, LegalHoldRecord
from app.retention import engine
from tests.builders import (
    make_category_at_revision,
    make_controller_at_revision,
    make_purpose_at_revision,
    make_rule,
    make_system_at_revision,
)
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
                controller_id = await make_controller_at_revision(
                    session, kind="platform", name="Spix"
                )
                await make_system_at_revision(session, "support")
                await make_category_at_revision(session, "support.ticket")
                rule = await make_rule(session, kind="maximum", period="P1M", category="support")
                profile_id, record_id = uuid.uuid4(), uuid.uuid4()
                collected = datetime(2024, 1, 31, 9, tzinfo=UTC)
                await session.execute(
                    profiles.insert().values(
                        id=profile_id,
                        fingerprint="f" * 64,
                        controller_id=controller_id,
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
                        controller_id=controller_id,
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


def test_no_revision_imports_the_app() -> None:
    """A revision carries its own frozen logic: replayed later, it must do what it did when
    it was written, not whatever the application code has become (env.py, the runner, may)."""
    versions = Path(alembic_config("sqlite+aiosqlite://").get_main_option("script_location"))
    files = sorted((versions / "versions").glob("*.py"))
    assert files
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else ["." * node.level]
            else:
                continue
            for name in names:
                assert name.split(".")[0] != "app", f"{path.name} imports {name}"
                assert not name.startswith("."), f"{path.name} imports relatively"


async def test_ranked_rules_migration_writes_what_the_app_computes(
    backend: str, tmp_path: Path
) -> None:
    """The revision's frozen copy of the retention logic writes exactly what the live app
    computes for the same data: each profile's ranked rules (byte for byte), each event time,
    and on the way down each record's explanation. Rules are stored out of id order, so a
    copy that ranks them in table order instead of the app's id order shows too."""
    before = "c71c55f9488c"
    profiles = sa.table(
        "record_profiles",
        *(sa.column(n) for n in ("fingerprint", "system", "region")),
        *(sa.column(n, sa.JSON()) for n in ("categories", "purposes")),
        sa.column("id", sa.Uuid()),
        sa.column("controller_id", sa.Uuid()),
        sa.column("ranked_rules"),
    )
    records = sa.table(
        "records",
        *(sa.column(n) for n in ("system", "record_ref", "state", "action", "held")),
        sa.column("keep_indefinitely"),
        *(sa.column(n, sa.JSON()) for n in ("events", "retention")),
        sa.column("id", sa.Uuid()),
        sa.column("controller_id", sa.Uuid()),
        sa.column("profile_id", sa.Uuid()),
        *(
            sa.column(n, UTCDateTime())
            for n in ("collected_at", "last_activity_at", "created_at", "updated_at")
        ),
    )
    record_identities = sa.table(
        "record_identities",
        *(sa.column(n) for n in ("identity_type", "digest", "key_id")),
        sa.column("record_id", sa.Uuid()),
    )
    events = {
        "r1": {"closed": "2024-03-01T10:00:00+02:00", "legal_claim": "2024-02-01T00:00:00-05:00"},
        "r2": {},
        "r3": {"legal_claim": "2024-03-31T12:00:00.5+00:00"},
        "r4": {"closed": "2024-01-01T00:00:00Z"},
    }
    async with fresh_database(backend, tmp_path, migrate=False) as url:
        await asyncio.to_thread(upgrade, url, before)
        database = Database.from_url(url)
        try:
            async with database.sessionmaker() as session:
                controller_id = await make_controller_at_revision(
                    session, kind="platform", name="Spix"
                )
                other_id = await make_controller_at_revision(session, name="Other")
                await make_system_at_revision(session, "support")
                await make_category_at_revision(session, "support.ticket")
                await make_category_at_revision(session, "support.chat")
                await make_purpose_at_revision(session, "service")
                await make_purpose_at_revision(session, "marketing")
                mine = {"controller_id": controller_id, "system": "support"}
                specs: list[dict[str, Any]] = [
                    {"kind": "maximum", "period": "P1M", "category": "support"},
                    {
                        "kind": "maximum",
                        "period": "P0Y6M",
                        "category": "support.ticket",
                        "anchor": "event:closed",
                        "action": "anonymize",
                    },
                    {"kind": "maximum", "period": "P2Y", "anchor": "last_activity_at"},
                    {"kind": "minimum", "period": "P30D", "anchor": "last_activity_at"},
                    {"kind": "minimum", "period": "P1Y1M", "category": "support", **mine},
                    {
                        "kind": "maximum",
                        "period": "P3M",
                        "category": "support.ticket",
                        "action": "anonymize",
                        **mine,
                    },
                    {
                        "kind": "maximum",
                        "period": "P12M",
                        "category": "support.ticket",
                        "anchor": "event:closed",
                        **mine,
                    },
                    {
                        "kind": "maximum",
                        "period": "P1D",
                        "category": "support.chat",
                        "purpose": "service",
                    },
                    {"kind": "maximum", "period": "P9M", "category": "support.chat"},
                    {
                        "kind": "maximum",
                        "period": "P10D",
                        "category": "support.ticket",
                        "purpose": "marketing",
                    },
                    {"kind": "minimum", "period": "P1W", "region": "eu"},
                    {"kind": "maximum", "period": "P5Y", "controller_id": other_id},
                    {"kind": "minimum", "period": "P2Y", "anchor": "event:legal_claim"},
                ]
                # Highest id first: table order is the reverse of the app's id order.
                ids = sorted((uuid.uuid4() for _ in specs), reverse=True)
                for rule_id, spec in zip(ids, specs, strict=True):
                    await make_rule(session, id=rule_id, **spec)
                profile_a, profile_b = uuid.uuid4(), uuid.uuid4()
                await session.execute(
                    profiles.insert(),
                    [
                        {
                            "id": profile_a,
                            "fingerprint": "a" * 64,
                            "controller_id": controller_id,
                            "system": "support",
                            "region": None,
                            "categories": ["account.profile", "support.ticket"],
                            "purposes": ["service"],
                        },
                        {
                            "id": profile_b,
                            "fingerprint": "b" * 64,
                            "controller_id": controller_id,
                            "system": "support",
                            "region": "eu",
                            "categories": ["support.chat"],
                            "purposes": ["service"],
                        },
                    ],
                )
                ids_of = {name: uuid.uuid4() for name in events}
                rows = [
                    ("r1", profile_a, datetime(2024, 1, 31, 9, tzinfo=UTC), "active", False),
                    (
                        "r2",
                        profile_a,
                        datetime(2023, 5, 31, 23, 30, tzinfo=UTC),
                        "restricted",
                        True,
                    ),
                    ("r3", profile_b, datetime(2024, 2, 29, tzinfo=UTC), "active", True),
                    ("r4", profile_b, datetime(2024, 1, 1, tzinfo=UTC), "erased", False),
                ]
                await session.execute(
                    records.insert(),
                    [
                        {
                            "id": ids_of[name],
                            "system": "support",
                            "record_ref": name,
                            "controller_id": controller_id,
                            "profile_id": profile,
                            "collected_at": collected,
                            "last_activity_at": (
                                datetime(2024, 2, 10, 12, tzinfo=UTC) if name == "r1" else None
                            ),
                            "created_at": collected,
                            "updated_at": collected,
                            "state": state,
                            "held": held,
                            "keep_indefinitely": False,
                            "action": "delete",
                            "events": events[name],
                            "retention": {},
                        }
                        for name, profile, collected, state, held in rows
                    ],
                )
                await session.execute(
                    record_identities.insert().values(
                        record_id=ids_of["r2"], identity_type="email", digest="d" * 64, key_id="k1"
                    )
                )
                by_record = LegalHold(reason="named record")
                by_scope = LegalHold(reason="scope", system="support", category="support")
                by_identity = LegalHold(reason="identity")
                released = LegalHold(
                    reason="released", released_at=datetime(2024, 1, 1, tzinfo=UTC)
                )
                tickets = LegalHold(reason="tickets", category="support.ticket")
                elsewhere = LegalHold(reason="elsewhere", controller_id=other_id)
                session.add_all([by_record, by_scope, by_identity, released, tickets, elsewhere])
                await session.flush()
                session.add_all(
                    [
                        LegalHoldRecord(hold_id=by_record.id, record_id=ids_of["r2"]),
                        LegalHoldRecord(hold_id=released.id, record_id=ids_of["r3"]),
                        LegalHoldIdentity(
                            hold_id=by_identity.id,
                            identity_type="email",
                            digest="d" * 64,
                            key_id="k1",
                        ),
                    ]
                )
                await session.commit()

            await asyncio.to_thread(upgrade, url)
            expected: dict[uuid.UUID, Any] = {}
            async with database.sessionmaker() as session:
                book = await engine.load_rulebook(session)
                stored_profiles = (await session.execute(sa.select(profiles))).all()
                assert len(stored_profiles) == 2
                for profile in stored_profiles:
                    ranked = engine.encode_ranked(book.ranked(engine.profile_facts(profile)))
                    assert profile.ranked_rules == ranked
                columns = sa.select(
                    records.c.id,
                    records.c.collected_at,
                    records.c.last_activity_at,
                    records.c.events,
                    records.c.state,
                    records.c.held,
                    profiles.c.controller_id,
                    profiles.c.system,
                    profiles.c.region,
                    profiles.c.categories,
                    profiles.c.purposes,
                    profiles.c.ranked_rules,
                ).join(profiles, profiles.c.id == records.c.profile_id)
                stored_records = (await session.execute(columns)).all()
                name_of = {record_id: name for name, record_id in ids_of.items()}
                for record in stored_records:
                    assert record.events == {
                        event: engine.event_text(datetime.fromisoformat(moment))
                        for event, moment in events[name_of[record.id]].items()
                    }
                holds = await engine.holds_of(
                    session,
                    [(r.id, engine.profile_facts(r)) for r in stored_records if r.held],
                )
                assert sorted(map(len, holds.values())) == [1, 4]
                now = datetime.now(UTC)
                for record in stored_records:
                    if record.state == "erased":
                        expected[record.id] = {}
                        continue
                    hold_ids = holds.get(record.id, [])
                    decision = engine.explain(record.ranked_rules, record, hold_ids, now)
                    expected[record.id] = {
                        "holds": hold_ids,
                        "rules": [
                            {
                                "id": o.rule_id,
                                "kind": o.kind,
                                "ends_at": o.ends_at,
                                "decisive": o.decisive,
                                "outranked": o.outranked,
                            }
                            for o in decision.rules
                        ],
                    }

            await asyncio.to_thread(downgrade, url, before)
            async with database.sessionmaker() as session:
                explained = {
                    record_id: raw if isinstance(raw, dict) else orjson.loads(raw)
                    for record_id, raw in await session.execute(
                        sa.select(records.c.id, records.c.retention)
                    )
                }
            # Ends compared as instants: PostgreSQL hands back its session time zone.
            for retention in explained.values():
                for outcome in retention.get("rules", []):
                    if outcome["ends_at"] is not None:
                        outcome["ends_at"] = datetime.fromisoformat(outcome["ends_at"])
            assert explained == expected
        finally:
            await database.dispose()
