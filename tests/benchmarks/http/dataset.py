"""The HTTP suite's data: records and their identity hashes written straight into the tables
(COPY on PostgreSQL, the driver's executemany on SQLite), shaped as registration would write
them, with the registry they refer to. 100,000 records by default, `SPIX_DSR_BENCH_HTTP_RECORDS`
for more (1,000,000 is the issue's size; the 10M growth run uses the same generator)."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

from app.core.db import Database, utcnow
from app.core.identity import Identity
from app.core.ids import new_id
from app.retention.policy import add_period
from tests.benchmarks import _data

CHUNK = 20_000
SAMPLE_IDS = 5_000


def records_wanted() -> int:
    return int(os.environ.get("SPIX_DSR_BENCH_HTTP_RECORDS", "100000"))


@dataclass
class Dataset:
    url: str
    backend: str
    records: int
    subjects: int
    world: _data.World
    admin: dict[str, str]
    # A random sample of the records' ids, for the retention check and the raw reference.
    record_ids: list[uuid.UUID] = field(default_factory=list)
    seconds: float = 0.0


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class _Digests:
    """Each subject's identity hashes, computed once for both of its records."""

    def __init__(self) -> None:
        self.blind = _data.indexer()
        self.cache: dict[int, list[tuple[str, str, str]]] = {}

    def of(self, subject: int) -> list[tuple[str, str, str]]:
        found = self.cache.get(subject)
        if found is None:
            if len(self.cache) > 4 * CHUNK:
                self.cache.clear()
            found = self.cache[subject] = [
                (str(d.type), d.digest, d.key_id)
                for d in (
                    self.blind.of(Identity.model_validate(raw))
                    for raw in _data.subject_identities(subject)
                )
            ]
        return found


def _rows(
    start: int,
    stop: int,
    world: _data.World,
    profiles: dict[tuple[str, ...], uuid.UUID],
    digests: _Digests,
    now: datetime,
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Records and identity rows in RECORD_COLUMNS / IDENTITY_COLUMNS order (PostgreSQL types)."""
    records, identities = [], []
    for index in range(start, stop):
        record_id = new_id()
        categories = _data.categories_of(index)
        purposes = [_data.PURPOSES[(index // 7) % 3]]
        collected = _data.collected_at(index)
        profile = profiles[_data._profile_key(categories, purposes)]
        records.append(
            (
                record_id,
                _data.SYSTEM,
                f"ref-{index:08d}",
                world.controller_id,
                profile,
                collected,
                None,
                "{}",
                "active",
                now,
                now,
                None,
                False,
                None,
                False,
                add_period(collected, _data.ONE_YEAR),
                "delete",
            )
        )
        for identity_type, digest, key_id in digests.of(_data.subject_of(index)):
            identities.append((record_id, identity_type, digest, key_id))
    return records, identities


def _chunks(total: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, CHUNK):
        yield start, min(start + CHUNK, total)


async def build(url: str, backend: str, total: int, *, analyze: bool = True) -> Dataset:
    """Registry, an admin key, then `total` records with two identities each (two records per
    subject). PostgreSQL tables are analyzed afterwards, as autovacuum would, unless `analyze`
    is False (a table that never was)."""
    started = utcnow()
    database = Database.from_url(url)
    try:
        async with database.sessionmaker() as session:
            world = await _data.seed_registry(session)
            admin = await _data.admin_headers(session)
            profiles = await _data.seed_profiles(session, world)
    finally:
        await database.dispose()
    dataset = Dataset(url, backend, total, (total + 1) // 2, world, admin)
    keep = random.Random(7)
    sample_rate = min(1.0, SAMPLE_IDS / max(total, 1))
    digests = _Digests()
    now = utcnow()
    if backend == "postgresql":
        connection = await asyncpg.connect(asyncpg_dsn(url), ssl=False)
        try:
            for start, stop in _chunks(total):
                records, identities = _rows(start, stop, world, profiles, digests, now)
                async with connection.transaction():
                    await connection.copy_records_to_table(
                        "records", records=records, columns=_data.RECORD_COLUMNS
                    )
                    await connection.copy_records_to_table(
                        "record_identities", records=identities, columns=_data.IDENTITY_COLUMNS
                    )
                dataset.record_ids += [r[0] for r in records if keep.random() < sample_rate]
            if analyze:
                await connection.execute("ANALYZE")
        finally:
            await connection.close()
    else:
        writer = _data.RawWriter(url)
        await writer.open()
        try:
            for start, stop in _chunks(total):
                records, identities = _rows(start, stop, world, profiles, digests, now)
                as_dicts = [dict(zip(_data.RECORD_COLUMNS, r, strict=True)) for r in records]
                for row in as_dicts:
                    row["events"] = {}
                await writer.write(
                    *writer.prepare(
                        as_dicts,
                        [dict(zip(_data.IDENTITY_COLUMNS, i, strict=True)) for i in identities],
                    )
                )
                dataset.record_ids += [r[0] for r in records if keep.random() < sample_rate]
        finally:
            await writer.close()
    dataset.seconds = (utcnow() - started).total_seconds()
    return dataset


async def connections_opened(url: str) -> int | None:
    """Sessions PostgreSQL has opened on the benchmark's database so far (its statistics,
    read from another database so that reading them opens none here)."""
    if make_url(url).get_backend_name() != "postgresql":
        return None
    name = make_url(url).database
    connection = await asyncpg.connect(
        asyncpg_dsn(make_url(url).set(database="postgres").render_as_string(False)), ssl=False
    )
    try:
        await connection.execute("SELECT pg_stat_clear_snapshot()")
        value = await connection.fetchval(
            "SELECT sessions FROM pg_stat_database WHERE datname = $1", name
        )
    finally:
        await connection.close()
    return int(value or 0)


async def analyze(url: str) -> None:
    """ANALYZE on PostgreSQL, as autovacuum would after the writes of a round. Without it a
    server whose autovacuum is off (this machine's is) keeps the statistics of empty request
    tables, and its pooled connections keep the generic plans made from them: sequential
    scans of tables that grow by thousands of requests a round."""
    if make_url(url).get_backend_name() != "postgresql":
        return
    connection = await asyncpg.connect(asyncpg_dsn(url), ssl=False)
    try:
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


async def analyzed(url: str) -> bool:
    """Whether PostgreSQL holds statistics for the records table."""
    if make_url(url).get_backend_name() != "postgresql":
        return False
    connection = await asyncpg.connect(asyncpg_dsn(url), ssl=False)
    try:
        return bool(
            await connection.fetchval(
                "SELECT last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL "
                "FROM pg_stat_user_tables WHERE relname = 'records'"
            )
        )
    finally:
        await connection.close()
