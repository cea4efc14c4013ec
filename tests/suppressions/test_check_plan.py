"""The suppression check probes the opt-outs' unique index once per digest, and PostgreSQL
keeps one generic plan for it, on a table of a few hundred opt-outs with statistics: the
size of a customer's first months. With the digests joined as `digest = ANY(array)`, that
table's generic plan scanned it whole, the custom plans (which see the array's length)
looked cheaper, and PostgreSQL planned the check afresh at every call: 100 to 165 µs of
PostgreSQL's CPU a check, against 40 to 45 µs now."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from app.auth.service import Principal
from app.core.db import Database, utcnow
from app.core.hot_read import ReadScope
from app.core.identity import Identity
from app.suppressions.schemas import SuppressionCheck, SuppressionCreate
from app.suppressions.service import check, create_suppression
from tests.benchmarks import _data
from tests.benchmarks.http.dataset import asyncpg_dsn
from tests.databases import fresh_database, plans_chosen, statements_sent

OPT_OUTS = 500
ADMIN = Principal(key_id=uuid.uuid4(), role="admin")


async def _fill(url: str) -> tuple[Database, uuid.UUID]:
    """The registry, one opt-out through the service (alice's, from email) and OPT_OUTS
    others written straight, then ANALYZE, as autovacuum would after such a load."""
    database = Database.from_url(url)
    async with database.sessionmaker() as session:
        world = await _data.seed_registry(session)
        body = SuppressionCreate(
            identity=Identity(type="email", value="alice@example.com"),
            channel="email",
            purpose=_data.PURPOSES[0],
            controller_id=world.controller_id,
            source="manual",
        )
        await create_suppression(session, ADMIN, _data.indexer(), body)
        await session.commit()
    now = utcnow()
    rows = [
        (
            uuid.uuid4(),
            "email",
            secrets.token_hex(32),
            "k1",
            "email",
            _data.PURPOSES[n % 3],
            world.controller_id,
            "manual",
            now,
        )
        for n in range(OPT_OUTS)
    ]
    connection = await asyncpg.connect(asyncpg_dsn(url), ssl=False)
    try:
        await connection.copy_records_to_table(
            "suppressions",
            records=rows,
            columns=[
                "id",
                "identity_type",
                "digest",
                "key_id",
                "channel",
                "purpose",
                "controller_id",
                "source",
                "created_at",
            ],
        )
        await connection.execute("ANALYZE suppressions")
    finally:
        await connection.close()
    return database, world.controller_id


def _asked(value: str) -> SuppressionCheck:
    return SuppressionCheck(
        identities=[Identity(type="email", value=value)],
        channel="email",
        purpose=_data.PURPOSES[0],
    )


async def test_the_check_keeps_one_index_plan(backend: str, tmp_path: Path) -> None:
    if backend != "postgresql":
        pytest.skip("plans are PostgreSQL's")
    async with fresh_database(backend, tmp_path) as url:
        database, _controller_id = await _fill(url)
        sent: list[tuple[str, Any]] = []
        async with (
            statements_sent(database, lambda sql, params: sent.append((sql, params))),
            ReadScope(database) as reads,
        ):
            found = await check(reads, ADMIN, _data.indexer(), _asked("Alice@Example.com"))
            missing = await check(reads, ADMIN, _data.indexer(), _asked("bob@example.com"))
        assert found.suppressed and len(found.matches) == 1
        assert not missing.suppressed and missing.matches == []
        statements = [(s, p) for s, p in sent if "suppressions" in s and "purposes" in s]
        assert len(statements) == 2 and statements[0][0] == statements[1][0], sent
        probed = 0
        async for mode, statement, plan, generic_plans in plans_chosen(database, statements[:1]):
            text = "\n".join([mode, statement, *plan])
            assert not any("Seq Scan on suppressions" in line for line in plan), text
            probed += any("uq_suppressions_identity_scope" in line for line in plan)
            if mode == "auto":  # settled on the generic plan, not planned at every call
                assert generic_plans > 0, text
        assert probed == 3
        await database.dispose()
