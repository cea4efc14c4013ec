"""Batch registration through the API against the raw driver's executemany, then subject lookup
latency and the identity probe's plan at that size. Prints figures; asserts correctness only."""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import Database, utcnow
from app.core.identity import IdentityType
from app.main import create_app
from app.subjects.service import subject_record_ids
from tests.benchmarks import _data
from tests.builders import TEST_SUBJECT_KEY
from tests.databases import BACKENDS, fresh_database

pytestmark = pytest.mark.benchmark

LOOKUPS = 1000


@pytest.mark.parametrize("backend", BACKENDS)
async def test_ingest_and_lookup(backend: str, tmp_path: Path) -> None:
    total = _data.bench_records()
    per_slice = _data.slice_size(total)
    print(f"\n=== ingest, {backend}, N={total:,} ===")

    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        async with database.sessionmaker() as session:
            world = await _data.seed_registry(session)
            headers = await _data.admin_headers(session)
        settings = Settings(
            database_url=url,
            subject_key=TEST_SUBJECT_KEY,
            data_dir=tmp_path,
            # The limiter still runs on every request; its budget is out of the benchmark's way.
            rate_limits={"read": "", "write": ""},
        )
        app = create_app(settings, database=database)
        analyzer = _data.Analyzer(database)
        autovacuum = await analyzer.autovacuum_setting()
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://bench") as client:
            api = await _ingest_api(client, headers, world, total, per_slice, analyzer)
            latencies = await _lookups(client, headers, total)
        plan = await _probe_plan(database, backend)
        await database.dispose()

    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        async with database.sessionmaker() as session:
            world = await _data.seed_registry(session)
            profiles = await _data.seed_profiles(session, world)
        raw = await _ingest_raw(url, world, profiles, total, per_slice, _data.Analyzer(database))
        await database.dispose()

    rows = []
    for number, (api_rate, raw_rate) in enumerate(zip(api["slices"], raw["slices"], strict=True)):
        rows.append(
            [
                f"{number * per_slice:,}-{(number + 1) * per_slice:,}",
                api_rate,
                raw_rate,
                raw_rate / api_rate,
            ]
        )
    rows.append(["overall", api["overall"], raw["overall"], raw["overall"] / api["overall"]])
    if backend == "postgresql":
        print(
            f"\nPostgreSQL autovacuum={autovacuum}; ANALYZE run {api['analyzes']} times during "
            "the API ingest, outside the timed requests (as autovacuum would, at 10% growth)"
        )
    _data.print_table(
        f"Batch registration, {backend}, {total:,} records (1000 a request, 2 identities each)",
        ["records", "API records/s", "raw executemany records/s", "raw/API (aim <= 5)"],
        rows,
    )
    _data.print_table(
        f"Subject lookup at {total:,} records, {backend} ({LOOKUPS} POST /v1/subjects/lookup)",
        ["p50 ms", "p99 ms", "max ms", "lookups/s (sequential)"],
        [
            [
                _data.percentile(latencies, 50) * 1000,
                _data.percentile(latencies, 99) * 1000,
                max(latencies) * 1000,
                len(latencies) / sum(latencies),
            ]
        ],
    )
    print(f"\nIdentity probe plan ({backend}):")
    for line in plan:
        print(f"  {line}")


async def _ingest_api(
    client: AsyncClient,
    headers: dict[str, str],
    world: _data.World,
    total: int,
    per_slice: int,
    analyzer: _data.Analyzer,
) -> dict[str, Any]:
    profiler = cProfile.Profile() if os.environ.get("SPIX_DSR_BENCH_PROFILE") else None
    slices: list[float] = []
    spent = slice_spent = 0.0
    done = 0
    for items in _data.batches(total, world.controller_id):
        body = orjson.dumps({"records": items})
        # Only the last slice is profiled: by then the table and its indexes are full size.
        profiling = profiler is not None and done >= total - per_slice
        if profiling:
            assert profiler is not None
            profiler.enable()
        started = time.perf_counter()
        response = await client.post(
            "/v1/records/batch",
            content=body,
            headers={**headers, "Content-Type": "application/json"},
        )
        elapsed = time.perf_counter() - started
        if profiling:
            assert profiler is not None
            profiler.disable()
        assert response.status_code == 200, response.text
        statuses = {result["status"] for result in response.json()["results"]}
        assert statuses == {"created"}, response.text[:500]
        spent += elapsed
        slice_spent += elapsed
        done += len(items)
        await analyzer.maybe(done)
        if done % per_slice == 0:
            slices.append(per_slice / slice_spent)
            slice_spent = 0.0
            print(f"  API: {done:,} records, last slice {slices[-1]:,.0f} records/s", flush=True)
    if profiler is not None:
        _print_profile(profiler)
    return {"slices": slices, "overall": done / spent, "analyzes": analyzer.runs}


async def _ingest_raw(
    url: str,
    world: _data.World,
    profiles: dict[tuple[str, ...], Any],
    total: int,
    per_slice: int,
    analyzer: _data.Analyzer,
) -> dict[str, Any]:
    writer = _data.RawWriter(url)
    await writer.open()
    blind = _data.indexer()
    slices: list[float] = []
    spent = slice_spent = 0.0
    done = 0
    try:
        for items in _data.batches(total, world.controller_id):
            records, identities = writer.prepare(
                *_data.raw_rows(items, world, profiles, blind, utcnow())
            )
            started = time.perf_counter()
            await writer.write(records, identities)
            elapsed = time.perf_counter() - started
            spent += elapsed
            slice_spent += elapsed
            done += len(items)
            await analyzer.maybe(done)
            if done % per_slice == 0:
                slices.append(per_slice / slice_spent)
                slice_spent = 0.0
                print(
                    f"  raw: {done:,} records, last slice {slices[-1]:,.0f} records/s", flush=True
                )
    finally:
        await writer.close()
    return {"slices": slices, "overall": done / spent}


async def _lookups(client: AsyncClient, headers: dict[str, str], total: int) -> list[float]:
    chooser = random.Random(7)
    subjects = _data.subject_of(total - 1) + 1
    latencies = []
    for _ in range(LOOKUPS):
        identity = chooser.choice(_data.subject_identities(chooser.randrange(subjects)))
        started = time.perf_counter()
        response = await client.post(
            "/v1/subjects/lookup", json={"identities": [identity]}, headers=headers
        )
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
        assert response.json()["items"], "every chosen identity has records"
    return latencies


async def _probe_plan(database: Database, backend: str) -> list[str]:
    """The plan of the digest probe the lookup runs, with a real digest as its value."""
    blind = _data.indexer()
    identity = _data.subject_identities(1)[0]
    digest = blind.digest(IdentityType(identity["type"]), identity["value"]).digest
    statement = subject_record_ids([digest]).compile(
        database.engine.sync_engine, compile_kwargs={"literal_binds": True}
    )
    prefix = "EXPLAIN" if backend == "postgresql" else "EXPLAIN QUERY PLAN"
    async with database.sessionmaker() as session:
        return [f"{statement}".replace("\n", " ")] + await _explain(session, prefix, statement)


async def _explain(session: AsyncSession, prefix: str, statement: Any) -> list[str]:
    rows = (await session.execute(text(f"{prefix} {statement}"))).all()
    return [" | ".join(str(v) for v in row) for row in rows]


def _print_profile(profiler: cProfile.Profile) -> None:
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(30)
        print(f"\ncProfile of the last slice, by {order}:")
        print(out.getvalue())
