"""Every statement the hot routes send keeps one plan on PostgreSQL.

PostgreSQL plans a prepared statement for its values at its first five runs, then keeps a
generic plan unless the custom plans looked cheaper; then it plans again at every run. A
statement that binds an array PostgreSQL can see the length of (`= ANY($1)`, `unnest($1)`)
is such a statement: its custom plans know the array holds two digests, the generic plan
assumes ten. The suppression check and a verified filing's routing were planned at every
call that way (the suppression check cost PostgreSQL 260 µs of CPU a check under `wrk`,
106 to 144 µs once it kept its plan).

Here the service answers each hot route in process (the five checks and reads, and filing
with a code and verified), the statements its driver is sent are recorded with their
values, and each is then run again on a connection of its own, nine times, each time in a
transaction rolled back: PostgreSQL must have settled on its generic plan by then."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
from httpx import ASGITransport

from app.core.config import Settings
from app.core.db import Database
from app.main import create_app
from tests.benchmarks import _data
from tests.benchmarks.http import dataset
from tests.builders import TEST_SUBJECT_KEY
from tests.databases import fresh_database, statements_sent

UNLIMITED = {"read": "100000000/minute", "write": "100000000/minute"}
# Transaction control, and the driver's own type introspection.
_NOT_OURS = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")
_DRIVER_OWN = ("typeinfo_tree", "set_config(")


def _email(n: int) -> list[dict[str, str]]:
    return [{"type": "email", "value": f"User{n}@Example.com"}]


async def _hot_routes(client: httpx.AsyncClient, data: dataset.Dataset) -> None:
    for n in range(12):
        body = {
            "type": "access",
            "regime": "gdpr",
            "identities": _email(n * 3),
            "requester": {"kind": "subject"},
            "channel": "api",
            "verified": n % 2 == 0,
        }
        filed = await client.post("/v1/requests", json=body)
        assert filed.status_code == 201, filed.text
        read = await client.get(f"/v1/requests/{filed.json()['id']}")
        assert read.status_code == 200, read.text
        lookup = await client.post("/v1/subjects/lookup", json={"identities": _email(n)})
        assert lookup.status_code == 200 and lookup.json()["items"], lookup.text
        record_id = data.record_ids[n]
        assert (await client.get(f"/v1/records/{record_id}/retention")).status_code == 200
        check = {"identities": _email(n), "channel": "email", "purpose": _data.PURPOSES[0]}
        assert (await client.post("/v1/suppressions/check", json=check)).status_code == 200


async def _plans_kept(url: str, sent: list[tuple[str, Any]]) -> dict[str, tuple[int, int]]:
    """(generic plans, custom plans) of each distinct statement, run nine times."""
    first: dict[str, Any] = {}
    for statement, values in sent:
        said = statement.lstrip().upper()
        if said.startswith(_NOT_OURS) or any(part in statement for part in _DRIVER_OWN):
            continue
        first.setdefault(statement, values)
    connection = await asyncpg.connect(dataset.asyncpg_dsn(url), ssl=False)
    kept = {}
    try:
        await connection.execute("ANALYZE")  # the tables as autovacuum would leave them
        for statement, values in first.items():
            prepared = await connection.prepare(statement)
            for _ in range(9):
                transaction = connection.transaction()
                await transaction.start()
                try:
                    await prepared.fetch(*(values or ()))
                except asyncpg.IntegrityConstraintViolationError:
                    pass  # a write of rows that exist: planned all the same
                finally:
                    await transaction.rollback()
            row = await connection.fetchrow(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = $1",
                prepared.get_name(),
            )
            kept[" ".join(statement.split())] = (row["generic_plans"], row["custom_plans"])
    finally:
        await connection.close()
    return kept


async def test_the_hot_routes_statements_keep_one_plan(backend: str, tmp_path: Path) -> None:
    if backend != "postgresql":
        pytest.skip("plan caching is PostgreSQL's")
    async with fresh_database(backend, tmp_path) as url:
        data = await dataset.build(url, backend, 2_000)
        database = Database.from_url(url)
        settings = Settings(
            database_url=url,
            subject_key=TEST_SUBJECT_KEY,
            data_dir=tmp_path,
            rate_limits=UNLIMITED,
        )
        app = create_app(settings, database=database)
        sent: list[tuple[str, Any]] = []
        async with (
            app.router.lifespan_context(app),
            statements_sent(database, lambda sql, values: sent.append((sql, values))),
            httpx.AsyncClient(
                transport=ASGITransport(app=app), base_url="http://t", headers=data.admin
            ) as client,
        ):
            await _hot_routes(client, data)
        await database.dispose()
        kept = await _plans_kept(url, sent)
    replanned = {statement[:160]: plans for statement, plans in kept.items() if not plans[0]}
    assert not replanned, json.dumps(replanned, indent=1)
    # The hot statements were all among them: the filing's, the routing, the reads.
    said = " ".join(kept)
    for table in ("request_identities", "request_scopes", "record_identities", "suppressions"):
        assert table in said, table
