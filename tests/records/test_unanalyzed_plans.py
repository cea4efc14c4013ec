"""The subject lookup and a request's routing find records through the identity index, then
read them by primary key, on tables PostgreSQL never analyzed. Without statistics, the former
`records.id IN (subquery) ORDER BY id LIMIT n` walked the records' primary key over the whole
table (1 s a lookup at 1M records until ANALYZE ran). The plans checked are those PostgreSQL
runs for the statements the service really sends: each is prepared and executed until the
plan cache has chosen (five custom plans, then custom or generic by cost), then explained.

Which plan that is should not matter: each statement is also explained with its generic and
its custom plan forced, and every one must probe the indexes. A plain join of the identities
to unnest(array) failed this: its generic plan hashed the whole identity table when there
were no statistics (records.carrying probes each digest in a fenced LATERAL subquery).

The lookup's statement must also settle on its generic plan: one planned per call costs more
than the statement's run."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from app.auth.service import Principal
from app.core.db import Database, utcnow
from app.core.hot_read import ReadScope
from app.core.identity import Identity
from app.core.ids import new_id
from app.records.schemas import LookupIn
from app.requests.models import SubjectRequest
from app.requests.scopes import records_by_controller
from app.subjects.service import lookup
from tests.benchmarks import _data
from tests.benchmarks.http.dataset import asyncpg_dsn
from tests.databases import fresh_database, plans_chosen, statements_sent

RECORDS = 50_000
TABLES = ("records", "record_identities")


async def _fill_unanalyzed(url: str) -> Database:
    database = Database.from_url(url)
    async with database.sessionmaker() as session:
        world = await _data.seed_registry(session)
        profiles = await _data.seed_profiles(session, world)
    profile_id = next(iter(profiles.values()))
    blind = _data.indexer()
    now = utcnow()
    records, identities = [], []
    for index in range(RECORDS):
        record_id = new_id()
        row = {
            "id": record_id,
            "system": _data.SYSTEM,
            "record_ref": f"ref-{index}",
            "controller_id": world.controller_id,
            "profile_id": profile_id,
            "collected_at": now,
            "events": "{}",
            "state": "active",
            "created_at": now,
            "updated_at": now,
            "held": False,
            "keep_indefinitely": False,
            "delete_by": now,
            "action": "delete",
        }
        records.append(tuple(row.get(column) for column in _data.RECORD_COLUMNS))
        for address in (f"user{index // 2}@example.com", f"alt{index // 2}@example.com"):
            digest = blind.of(Identity(type="email", value=address))
            identities.append((record_id, "email", digest.digest, digest.key_id))
    connection = await asyncpg.connect(asyncpg_dsn(url), ssl=False)
    try:
        for table in TABLES:  # no autovacuum either: statistics never appear during the test
            await connection.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
        await connection.copy_records_to_table(
            "records", records=records, columns=_data.RECORD_COLUMNS
        )
        await connection.copy_records_to_table(
            "record_identities", records=identities, columns=_data.IDENTITY_COLUMNS
        )
        analyzed = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_user_tables WHERE relname = ANY($1) "
            "AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)",
            list(TABLES),
        )
        assert analyzed == 0
    finally:
        await connection.close()
    return database


def _plan_problems(plan: list[str]) -> list[str]:
    """Plan lines that scan records or identities other than through an index condition."""
    problems = []
    for number, line in enumerate(plan):
        if any(f"Seq Scan on {table} " in line + " " for table in TABLES):
            problems.append(line.strip())
        if "Index Scan using pk_records on records" in line or (
            "Index Only Scan using pk_records" in line
        ):
            following = plan[number + 1] if number + 1 < len(plan) else ""
            if "Index Cond" not in following:
                problems.append(f"{line.strip()} / {following.strip()}")
    return problems


async def test_lookup_uses_the_identity_index_without_statistics(
    backend: str, tmp_path: Path
) -> None:
    if backend != "postgresql":
        pytest.skip("plans are PostgreSQL's")
    async with fresh_database(backend, tmp_path) as url:
        database = await _fill_unanalyzed(url)
        sent: list[tuple[str, Any]] = []
        async with (
            statements_sent(database, lambda sql, params: sent.append((sql, params))),
            ReadScope(database) as reads,
        ):
            found = await lookup(
                reads,
                Principal(key_id=uuid.uuid4(), role="admin"),
                _data.indexer(),
                LookupIn(identities=[Identity(type="email", value="user777@example.com")]),
                50,
                None,
            )
        assert sorted(r.record_ref for r in found.items) == ["ref-1554", "ref-1555"]
        statements = [(s, p) for s, p in sent if "record_identities" in s or "FROM records" in s]
        # One statement: the identity index into an array, then the records by primary key.
        assert len(statements) == 1, sent
        used_the_digest_index = []
        async for mode, statement, plan, generic_plans in plans_chosen(database, statements):
            assert not _plan_problems(plan), "\n".join([mode, statement, *plan])
            if mode == "auto":  # settled on the generic plan, not planned at every call
                assert generic_plans > 0, "\n".join([statement, *plan])
            used_the_digest_index += [
                line for line in plan if "ix_record_identities_digest" in line
            ]
        assert used_the_digest_index
        await database.dispose()


async def test_a_request_finds_its_records_through_the_identity_index_without_statistics(
    backend: str, tmp_path: Path
) -> None:
    """The records a request is routed to (with their controllers), read in one statement
    joined to the identity index, keep the index plan PostgreSQL runs them with, and keep one
    plan: when the digests' array was bound straight, custom plans (which see its length)
    looked cheaper than the generic one and every verified filing planned this statement."""
    if backend != "postgresql":
        pytest.skip("plans are PostgreSQL's")
    async with fresh_database(backend, tmp_path) as url:
        database = await _fill_unanalyzed(url)
        digests = _data.indexer().all_of(Identity(type="email", value="user777@example.com"))
        sent: list[tuple[str, Any]] = []

        def capture(statement: str, params: Any) -> None:
            if "record_identities" in statement:
                sent.append((statement, params))

        async with statements_sent(database, capture), database.sessionmaker() as session:
            for filed_by in (None, uuid.uuid4()):
                request = SubjectRequest(id=new_id(), filed_by_controller_id=filed_by)
                found, _controllers = await records_by_controller(session, request, digests)
                refs = sorted(row.record_ref for rows in found.values() for row in rows)
                assert refs == ([] if filed_by else ["ref-1554", "ref-1555"])
        assert len(sent) == 2
        async for mode, statement, plan, generic_plans in plans_chosen(database, sent):
            assert not _plan_problems(plan), "\n".join([mode, statement, *plan])
            assert any("ix_record_identities_digest" in line for line in plan), plan
            if mode == "auto":  # settled on the generic plan, not planned at every filing
                assert generic_plans > 0, "\n".join([statement, *plan])
        await database.dispose()
