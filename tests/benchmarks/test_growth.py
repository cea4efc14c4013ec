"""Growth on PostgreSQL: the records and identities tables at a tenth of
SPIX_DSR_BENCH_GROWTH_RECORDS and then at all of it (default 200,000, so `make bench` stays
quick; 10,000,000 for the 1M → 10M figure), the same three reads measured at both sizes:

- the subject lookup, `POST /v1/subjects/lookup` with one e-mail address;
- the retention check, `GET /v1/records/{id}/retention`;
- a due-sweep page, `GET /v1/retention/due?system=accounts&limit=500` at a random depth
  (a cursor made the way the endpoint makes its own).

Each read is timed over HTTP (in-process app, random probes, p50/p99) and per statement: the
SQL statements the request ran against records and record identities, captured and run
again under EXPLAIN ANALYZE (database time, p50). Prints both sizes and the ratio, and the
plan at the larger size. Setup is the `_population` generator run inside PostgreSQL
(INSERT ... SELECT over generate_series, hashes by pgcrypto's HMAC; a sample checked
against the Python generator and the service's BlindIndexer), because a Python COPY feed
does 1,000-2,000 records/s on this shared machine; ANALYZE after each load. Prints figures
only; asserts nothing about time.

    SPIX_DSR_TEST_POSTGRES_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test \\
    SPIX_DSR_BENCH_GROWTH_RECORDS=10000000 .venv/bin/pytest tests/benchmarks/test_growth.py -s

10,000,000 records need about 15 GB of free disk; the database is dropped afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from httpx import ASGITransport, AsyncClient

from app.core.config import Settings
from app.core.db import Database
from app.core.pagination import encode_cursor
from app.main import create_app
from app.records.models import DUE_PREDICATE
from tests.benchmarks import _data, _population
from tests.builders import TEST_SUBJECT_KEY
from tests.databases import POSTGRES_URL, fresh_database, statements_sent

pytestmark = [
    pytest.mark.benchmark,
    pytest.mark.skipif(not POSTGRES_URL, reason="growth is measured on PostgreSQL"),
]

PROBES = 200
WARMUP = 20
SWEEP_SYSTEM = _data.SYSTEM
DISK_BYTES_PER_RECORD = 1500  # records, identities and their indexes, with room to spare

Probe = Callable[[AsyncClient, random.Random], Awaitable[Any]]


def growth_records() -> int:
    total = int(os.environ.get("SPIX_DSR_BENCH_GROWTH_RECORDS", "200000"))
    return total // 20 * 20  # a tenth of it stays a whole number of subjects


class Statements:
    """The SQL a request sends that touches records, captured as the driver received it."""

    def __init__(self) -> None:
        self.captured: list[tuple[str, Any]] = []

    def capture(self, statement: str, parameters: Any) -> None:
        if " records" in statement or "record_identities" in statement:
            self.captured.append((statement, parameters))

    def take(self) -> list[tuple[str, Any]]:
        taken, self.captured = self.captured, []
        return taken


async def explain(
    database: Database, statements: list[tuple[str, Any]]
) -> tuple[float, list[dict[str, Any]]]:
    """Database time (planning + execution, ms) of these statements, and their plans."""
    total, plans = 0.0, []
    async with database.engine.connect() as connection:
        for statement, parameters in statements:
            result = await connection.exec_driver_sql(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters
            )
            raw = result.scalar_one()
            (plan,) = json.loads(raw) if isinstance(raw, str) else raw
            total += plan["Planning Time"] + plan["Execution Time"]
            plans.append(plan["Plan"])
    return total, plans


def plan_nodes(plan: dict[str, Any]) -> list[str]:
    """The plan's scans, e.g. `Index Scan on records (records_pkey)`."""
    nodes = []
    if "Relation Name" in plan or "Index Name" in plan:
        where = plan.get("Relation Name", "")
        index = f" ({plan['Index Name']})" if "Index Name" in plan else ""
        nodes.append(f"{plan['Node Type']} on {where}{index}")
    for child in plan.get("Plans", []):
        nodes += plan_nodes(child)
    return nodes


async def measure(
    database: Database, client: AsyncClient, statements: Statements, probe: Probe, seed: int
) -> dict[str, Any]:
    chooser = random.Random(seed)
    for _ in range(WARMUP):
        await probe(client, chooser)
    await asyncio.sleep(0)
    statements.take()
    http, db = [], []
    plans: list[str] = []
    for n in range(PROBES):
        started = time.perf_counter()
        await probe(client, chooser)
        http.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0)  # asyncpg logs a statement soon after it, not during it
        ran = statements.take()
        # EXPLAIN ANALYZE runs each statement again: a quarter of the probes suffice.
        if n % 4 == 0:
            spent, trees = await explain(database, ran)
            db.append(spent)
            if not plans:
                plans = [" + ".join(plan_nodes(tree)) for tree in trees]
    return {
        "http_p50": _data.percentile(http, 50),
        "http_p99": _data.percentile(http, 99),
        "db_p50": _data.percentile(db, 50),
        "db_p99": _data.percentile(db, 99),
        "plans": plans,
    }


async def probes(dsn: str, size: int) -> dict[str, Probe]:
    """The three reads, each choosing a random subject, record or depth of this table."""
    connection = await asyncpg.connect(dsn)
    try:
        picks = random.Random(size).sample(range(size), 2000)
        rows = await connection.fetch(
            "SELECT id FROM records WHERE (system, record_ref) IN"
            " (SELECT * FROM unnest($1::text[], $2::text[]))",
            [_population.system_of(i) for i in picks],
            [f"ref-{i:08d}" for i in picks],
        )
        record_ids = [str(r["id"]) for r in rows]
        due = await connection.fetchval(
            f"SELECT count(*) FROM records WHERE system = $1 AND {DUE_PREDICATE}", SWEEP_SYSTEM
        )
        cursors = []
        for depth in random.Random(size + 1).sample(range(due), 50):
            row = await connection.fetchrow(
                f"SELECT delete_by, id FROM records WHERE system = $1 AND {DUE_PREDICATE}"
                " ORDER BY delete_by, id OFFSET $2 LIMIT 1",
                SWEEP_SYSTEM,
                depth,
            )
            cursors.append(encode_cursor([row["delete_by"].isoformat(), str(row["id"])]))
    finally:
        await connection.close()

    async def lookup(client: AsyncClient, chooser: random.Random) -> None:
        subject = chooser.randrange(size // 2)
        email = _data.subject_identities(subject)[0]
        answer = await client.post("/v1/subjects/lookup", json={"identities": [email]})
        assert answer.status_code == 200 and len(answer.json()["items"]) == 2, answer.text

    async def check(client: AsyncClient, chooser: random.Random) -> None:
        answer = await client.get(f"/v1/records/{chooser.choice(record_ids)}/retention")
        assert answer.status_code == 200, answer.text

    async def sweep(client: AsyncClient, chooser: random.Random) -> None:
        params: dict[str, str | int] = {
            "system": SWEEP_SYSTEM,
            "limit": 500,
            "cursor": chooser.choice(cursors),
        }
        answer = await client.get("/v1/retention/due", params=params)
        assert answer.status_code == 200, answer.text

    return {"subject lookup": lookup, "retention check": check, "due sweep page": sweep}


async def measure_all(
    database: Database, client: AsyncClient, statements: Statements, dsn: str, size: int
) -> dict[str, dict[str, Any]]:
    results = {}
    for n, (name, probe) in enumerate((await probes(dsn, size)).items()):
        results[name] = await measure(database, client, statements, probe, seed=n)
        print(f"  {size:,}: {name} p50 {results[name]['http_p50']:.2f} ms", flush=True)
    return results


async def test_reads_stay_flat_as_the_tables_grow(tmp_path: Path) -> None:
    total = growth_records()
    base = total // 10
    free = shutil.disk_usage(tmp_path).free
    print(
        f"\n=== growth {base:,} → {total:,} records (PostgreSQL); free disk {free / 2**30:.0f} GiB"
    )
    if free < total * DISK_BYTES_PER_RECORD:
        pytest.skip(f"{total:,} records need about {total * DISK_BYTES_PER_RECORD / 2**30:.0f} GiB")
    async with fresh_database("postgresql", tmp_path) as url:
        dsn = _population.pg_dsn(url)
        database = Database.from_url(url)
        analyzer = _data.Analyzer(database)
        async with database.sessionmaker() as session:
            population = await _population.seed(session)
            profiles = await _population.seed_profiles(session, population)
            headers = await _data.admin_headers(session)
        settings = Settings(database_url=url, subject_key=TEST_SUBJECT_KEY, data_dir=tmp_path)
        app = create_app(settings, database=database)
        statements = Statements()
        figures, sizes = {}, {}
        async with (
            statements_sent(database, statements.capture),
            AsyncClient(
                transport=ASGITransport(app=app), base_url="http://bench", headers=headers
            ) as client,
        ):
            loaded = 0
            for size in (base, total):
                started = time.perf_counter()
                rate = await _population.insert_records_sql(url, population, profiles, loaded, size)
                await analyzer.now()
                loaded = size
                checked = await _population.check_sample(url, population, profiles, size)
                print(
                    f"  grown to {size:,}: {rate:,.0f} records/s, "
                    f"{time.perf_counter() - started:.0f} s with ANALYZE; {checked} sampled "
                    "records agree with the generator and the service's hashing",
                    flush=True,
                )
                figures[size] = await measure_all(database, client, statements, dsn, size)
                sizes[size] = await _table_sizes(dsn)
        await database.dispose()
    _report(base, total, figures, sizes)


async def _table_sizes(dsn: str) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) AS size FROM pg_class"
            " WHERE relname IN ('records', 'record_identities') ORDER BY relname"
        )
    finally:
        await connection.close()
    return ", ".join(f"{r['relname']} {r['size']}" for r in rows)


def _report(
    base: int, total: int, figures: dict[int, dict[str, Any]], sizes: dict[int, str]
) -> None:
    rows = []
    for name in figures[base]:
        small, large = figures[base][name], figures[total][name]
        for label, key in (
            ("HTTP p50 ms", "http_p50"),
            ("HTTP p99 ms", "http_p99"),
            ("database p50 ms (EXPLAIN ANALYZE)", "db_p50"),
            ("database p99 ms (EXPLAIN ANALYZE)", "db_p99"),
        ):
            rows.append([f"{name}: {label}", small[key], large[key], large[key] / small[key]])
    _data.print_table(
        f"Reads at {base:,} and {total:,} records (ratio 1.0 = flat; a shared 2-core machine, "
        "so expect noise)",
        ["read", f"{base:,}", f"{total:,}", "ratio"],
        rows,
    )
    print(f"\n  table sizes: {base:,}: {sizes[base]}; {total:,}: {sizes[total]}")
    print(f"  plans at {total:,} (statements touching records, in order):")
    for name, result in figures[total].items():
        for plan in result["plans"]:
            print(f"    {name}: {plan}")
