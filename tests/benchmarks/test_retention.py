"""Retention at N records: recompute after a rule change, the due sweep, and single checks on a
real uvicorn server beside /healthz on the same server. Prints figures; asserts correctness only."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import event, func, select, text, update

from app.core.config import Settings
from app.core.db import Database
from app.main import create_app
from app.records.importer import OPERATOR_PRINCIPAL
from app.records.models import Record
from app.records.register import register
from app.retention.recompute import Scope, recompute
from app.retention_rules.models import RetentionRule
from tests.benchmarks import _data
from tests.builders import TEST_SUBJECT_KEY
from tests.databases import BACKENDS, free_port, fresh_database

pytestmark = pytest.mark.benchmark

PAGE = 500
CONNECTIONS = 32
LOAD_SECONDS = 5.0
WARMUP_SECONDS = 1.0
CHECK_IDS = 5000
# The sweep stops here when pages cost more than they should, and says how far it got.
SWEEP_BUDGET_SECONDS = float(os.environ.get("SPIX_DSR_BENCH_SWEEP_SECONDS", "300"))


@pytest.mark.parametrize("backend", BACKENDS)
async def test_retention(backend: str, tmp_path: Path) -> None:
    total = _data.bench_records()
    print(f"\n=== retention, {backend}, N={total:,} ===")
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        try:
            async with database.sessionmaker() as session:
                world = await _data.seed_registry(session)
                headers = await _data.admin_headers(session)
            analyzer = _data.Analyzer(database)
            autovacuum = await analyzer.autovacuum_setting()
            build_rate = await _build(database, world, total, analyzer)
            rec = await _recompute(database, world, total)
            sweep = await _sweep(database, url, headers, total, tmp_path)
            load = await _server_load(database, url, headers, tmp_path)
            # Last: its rolled-back row versions would otherwise slow the sweep's index scan.
            rec["bare_rate"] = await _bare_update(database)
        finally:
            await database.dispose()

    if backend == "postgresql":
        print(
            f"\nPostgreSQL autovacuum={autovacuum}; ANALYZE run {analyzer.runs} times while "
            "building, outside the timed transactions (as autovacuum would, at 10% growth)"
        )
    _data.print_table(
        f"Building {total:,} records with app.records.register.register ({backend})",
        ["records/s (1000 a transaction, no HTTP)"],
        [[build_rate]],
    )
    summary = [
        ["records recomputed", rec["done"]],
        ["seconds", rec["seconds"]],
        ["records/s (aim > 50,000)", rec["rate"]],
        ["bare UPDATE of delete_by on the same rows, rows/s (the ceiling)", rec["bare_rate"]],
        ["recompute / bare UPDATE", rec["rate"] / rec["bare_rate"]],
        ["RSS before, MiB", rec["rss_before"]],
        ["RSS peak - before, MiB", rec["rss_peak_delta"]],
    ]
    if rec["traced"]:
        summary.append(["tracemalloc peak, MiB", rec["traced_peak"]])
    _data.print_table(
        f"Recompute after a rule change reaching all {total:,} records ({backend}), one "
        "transaction",
        ["figure", "value"],
        summary,
    )
    _data.print_table(
        f"Due sweep over {total:,} due records ({backend}), GET /v1/retention/due limit={PAGE}",
        ["figure", "value"],
        [
            ["pages swept", sweep["pages"]],
            ["records swept", sweep["records"]],
            [
                "complete",
                "yes"
                if sweep["complete"]
                else f"no: stopped at the {SWEEP_BUDGET_SECONDS:g} s budget",
            ],
            ["first 10 pages, ms", sweep["first"] * 1000],
            ["last 10 pages, ms", sweep["last"] * 1000],
            ["last/first (constant cost: ~1)", sweep["last"] / sweep["first"]],
            ["mean ms per page (compare across N)", sweep["seconds"] / sweep["pages"] * 1000],
            ["pages/s", sweep["pages"] / sweep["seconds"]],
            ["records/s", sweep["records"] / sweep["seconds"]],
        ],
    )
    health, check = load["healthz"], load["retention"]
    _data.print_table(
        f"uvicorn, one worker, {CONNECTIONS} connections, {LOAD_SECONDS:.0f} s each ({backend})",
        [
            "endpoint",
            "requests",
            "errors",
            "rps",
            "p50 ms",
            "p99 ms",
            "server CPU us/req",
            "server-bound rps (1 core)",
            "client CPU %",
        ],
        [
            ["GET /healthz", *_load_row(health)],
            ["GET /v1/records/{id}/retention", *_load_row(check)],
        ],
    )
    _data.print_table(
        "Retention check against /healthz on the same server",
        ["figure", "value"],
        [
            ["rps ratio check/healthz (aim >= 0.25 on PostgreSQL)", check["rps"] / health["rps"]],
            # The client is one Python process on the same two cores; the server's CPU per
            # request gives the ratio a saturated server would show.
            ["server CPU per request ratio healthz/check", health["cpu_us"] / check["cpu_us"]],
        ],
    )


def _load_row(result: dict[str, Any]) -> list[Any]:
    return [
        result["requests"],
        result["errors"],
        result["rps"],
        result["p50"] * 1000,
        result["p99"] * 1000,
        result["cpu_us"],
        1e6 / result["cpu_us"],
        result["client_cpu"] * 100,
    ]


async def _build(
    database: Database, world: _data.World, total: int, analyzer: _data.Analyzer
) -> float:
    """Registration through the service, as the importer drives it (no HTTP, no audit)."""
    blind = _data.indexer()
    per_slice = _data.slice_size(total)
    spent = 0.0
    done = 0
    for items in _data.batches(total, world.controller_id):
        started = time.perf_counter()
        async with database.sessionmaker() as session, session.begin():
            outcomes = await register(session, OPERATOR_PRINCIPAL, blind, items)
        spent += time.perf_counter() - started
        assert all(o.status == "created" for o in outcomes)
        done += len(items)
        await analyzer.maybe(done)
        if done % per_slice == 0:
            print(f"  built {done:,} records, {done / spent:,.0f} records/s so far", flush=True)
    return done / spent


async def _recompute(database: Database, world: _data.World, total: int) -> dict[str, Any]:
    """A rule change (P1Y to P2Y on the root category) and its recompute, in one transaction."""
    traced = bool(os.environ.get("SPIX_DSR_BENCH_TRACEMALLOC"))
    updates: list[tuple[str, Any]] = []

    def capture(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("UPDATE RECORDS"):
            updates.append((statement, parameters))

    rss_before = _data.rss_mib()
    _data.reset_peak_rss()
    event.listen(database.engine.sync_engine, "before_cursor_execute", capture)
    if traced:
        tracemalloc.start()
    try:
        async with database.sessionmaker() as session, session.begin():
            started = time.perf_counter()
            await session.execute(
                update(RetentionRule).where(RetentionRule.id == world.rule_id).values(period="P2Y")
            )
            done = await recompute(session, [Scope(category=_data.ROOT_CATEGORY)])
            seconds = time.perf_counter() - started
        rss_peak_delta = _data.peak_rss_mib() - rss_before
        traced_peak = tracemalloc.get_traced_memory()[1] / 2**20 if traced else 0.0
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", capture)
        if traced:
            tracemalloc.stop()
    assert done == total
    # How the database ran the recompute: one UPDATE per group of profiles.
    explain = "EXPLAIN QUERY PLAN " if database.engine.dialect.name == "sqlite" else "EXPLAIN "
    async with database.engine.connect() as connection:
        for statement, parameters in updates[:1]:
            plan = await connection.exec_driver_sql(explain + statement, parameters)
            print(f"  {len(updates)} UPDATE statement(s); plan of the first:", flush=True)
            for line in plan:
                print("   ", " ".join(str(part) for part in line), flush=True)
    async with database.sessionmaker() as session:
        sample = (
            await session.execute(select(Record.collected_at, Record.delete_by).limit(1))
        ).first()
        assert sample is not None and sample.delete_by.year == sample.collected_at.year + 2
    return {
        "done": done,
        "rate": done / seconds,
        "seconds": seconds,
        "traced": traced,
        "traced_peak": traced_peak,
        "rss_before": rss_before,
        "rss_peak_delta": rss_peak_delta,
    }


# The least any recompute must do: every row's delete_by rewritten by one SQL statement.
_BARE_UPDATE = {
    "postgresql": "UPDATE records SET delete_by = "
    "timezone('UTC', timezone('UTC', collected_at) + interval '3 years')",
    "sqlite": "UPDATE records SET delete_by = "
    "date(substr(collected_at, 1, 10), '+3 years') || substr(collected_at, 11)",
}


async def _bare_update(database: Database) -> float:
    """The ceiling for a recompute: every row's delete_by rewritten in SQL, rolled back."""
    async with database.engine.connect() as connection:
        transaction = await connection.begin()
        started = time.perf_counter()
        result = await connection.execute(text(_BARE_UPDATE[database.engine.dialect.name]))
        seconds = time.perf_counter() - started
        await transaction.rollback()
    return int(result.rowcount) / seconds


async def _sweep(
    database: Database, url: str, headers: dict[str, str], total: int, tmp_path: Path
) -> dict[str, Any]:
    settings = Settings(database_url=url, subject_key=TEST_SUBJECT_KEY, data_dir=tmp_path)
    app = create_app(settings, database=database)
    timings: list[float] = []
    seen = 0
    cursor: str | None = None
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://bench") as client:
        # One untimed page first, so the first timed pages do not carry the app's first request.
        warm = await client.get(
            "/v1/retention/due", params={"system": _data.SYSTEM, "limit": PAGE}, headers=headers
        )
        assert warm.status_code == 200, warm.text
        while True:
            params: dict[str, Any] = {"system": _data.SYSTEM, "limit": PAGE}
            if cursor is not None:
                params["cursor"] = cursor
            started = time.perf_counter()
            response = await client.get("/v1/retention/due", params=params, headers=headers)
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
            page = response.json()
            seen += len(page["items"])
            cursor = page["next_cursor"]
            if cursor is None or sum(timings) > SWEEP_BUDGET_SECONDS:
                break
    complete = cursor is None
    assert seen == total or not complete
    return {
        "pages": len(timings),
        "records": seen,
        "complete": complete,
        "first": sum(timings[:10]),
        "last": sum(timings[-10:]),
        "seconds": sum(timings),
    }


async def _server_load(
    database: Database, url: str, headers: dict[str, str], tmp_path: Path
) -> dict[str, Any]:
    async with database.sessionmaker() as session:
        ids = [
            str(i)
            for i in (
                await session.scalars(select(Record.id).order_by(func.random()).limit(CHECK_IDS))
            ).all()
        ]
    port = free_port()
    log = tmp_path / "uvicorn.log"
    env = {
        **os.environ,
        "SPIX_DSR_DATABASE_URL": url,
        "SPIX_DSR_SUBJECT_KEY": TEST_SUBJECT_KEY,
        "SPIX_DSR_DATA_DIR": str(tmp_path),
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:create_default_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        # As `spix-dsr serve` runs it: no uvicorn access log (the app logs requests itself).
        "--no-access-log",
    ]
    with log.open("wb") as sink:
        server = subprocess.Popen(command, env=env, stdout=sink, stderr=sink)  # noqa: ASYNC220
    # One client per connection: a single httpx pool shared by 32 tasks spends its time
    # arbitrating the pool (about 3x fewer requests per second from the same CPU).
    clients = [
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers=headers,
            timeout=10.0,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        for _ in range(CONNECTIONS)
    ]
    try:
        await _wait_ready(clients[0], server, log)
        chooser = random.Random(11)
        shuffled = chooser.sample(ids, len(ids))
        results = {}
        for name, path in (
            ("healthz", lambda _n: "/healthz"),
            ("retention", lambda n: f"/v1/records/{shuffled[n % len(shuffled)]}/retention"),
        ):
            await _load(clients, path, WARMUP_SECONDS, server.pid)
            results[name] = await _load(clients, path, LOAD_SECONDS, server.pid)
            print(f"  {name}: {results[name]['rps']:,.0f} rps", flush=True)
        return results
    finally:
        for client in clients:
            await client.aclose()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def _wait_ready(
    client: httpx.AsyncClient, server: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            _server_failed("uvicorn exited", log)
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    _server_failed("uvicorn did not start", log)


def _server_failed(why: str, log: Path) -> NoReturn:
    raise AssertionError(f"{why}: {log.read_text()[-2000:]}")


async def _load(
    clients: list[httpx.AsyncClient], path: Callable[[int], str], seconds: float, pid: int
) -> dict[str, Any]:
    """One worker per connection, each one request at a time, until the deadline."""
    latencies: list[float] = []
    errors = 0
    counter = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors, counter
        while time.perf_counter() < deadline:
            counter += 1
            started = time.perf_counter()
            response = await client.get(path(counter))
            latencies.append(time.perf_counter() - started)
            errors += response.status_code != 200

    cpu_before, client_before = _data.cpu_seconds(pid), time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker(client) for client in clients))
    elapsed = time.perf_counter() - started
    cpu = _data.cpu_seconds(pid) - cpu_before
    client_cpu = time.process_time() - client_before
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50": _data.percentile(latencies, 50),
        "p99": _data.percentile(latencies, 99),
        "cpu_us": cpu / len(latencies) * 1e6,
        "client_cpu": client_cpu / elapsed,
    }
