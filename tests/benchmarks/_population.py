"""A registered population for the load model and the growth benchmark: the generator of
`_data` spread over ten systems and five controllers (Spix and four customers), written
with PostgreSQL COPY. Identities are hashed by the service's own BlindIndexer, in a pool of
processes while the previous chunk is copied.

Subject s owns records 2s and 2s+1 (`_data.subject_of`), in two adjacent systems. Record
2s is held for Spix; record 2s+1 for Spix when s is odd and for a customer when s is even, so
half the subjects have a customer scope that waits for the customer's decision."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import insert, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.identity import Identity
from app.core.ids import new_id
from app.records.models import RecordProfile, RecordProfileCategory, RecordProfilePurpose
from app.records.profiles import fingerprint
from app.retention import engine
from app.retention.policy import add_period
from app.systems.models import System
from tests.benchmarks import _data
from tests.builders import make_controller, make_system

SYSTEMS = (
    _data.SYSTEM,
    "billing",
    "messaging",
    "support",
    "analytics",
    "orders",
    "payments",
    "shipping",
    "reviews",
    "search",
)
CUSTOMERS = 4
# The generator's categories and purposes repeat every 525 records, systems every 10,
# controllers every 16: every profile appears among the first 8,400 records.
PROFILE_PERIOD = 8400
CHUNK = 50_000  # records per COPY (an even number: a subject's two records stay together)


@dataclass(frozen=True)
class Population:
    platform_id: uuid.UUID
    customer_ids: tuple[uuid.UUID, ...]
    rule_id: uuid.UUID

    def controller_of(self, index: int) -> uuid.UUID:
        subject = _data.subject_of(index)
        if index % 2 == 1 and subject % 2 == 0:
            return self.customer_ids[(subject // 2) % len(self.customer_ids)]
        return self.platform_id


def system_of(index: int) -> str:
    return SYSTEMS[index % len(SYSTEMS)]


def index_of(record_ref: str) -> int:
    return int(record_ref.removeprefix("ref-"))


async def seed(session: AsyncSession, webhook_url: str | None = None) -> Population:
    """The registry of `_data.seed_registry` (Spix, the categories, purposes and one P1Y
    maximum rule) with nine more systems and four customers."""
    world = await _data.seed_registry(session)
    for key in SYSTEMS[1:]:
        await make_system(session, key)
    customers = [
        (await make_controller(session, kind="customer", name=f"Customer {n}")).id
        for n in range(CUSTOMERS)
    ]
    if webhook_url is not None:
        await session.execute(update(System).values(webhook_url=webhook_url))
        await session.commit()
    return Population(world.controller_id, tuple(customers), world.rule_id)


def _profile_key(
    controller_id: uuid.UUID, system: str, categories: Sequence[str], purposes: Sequence[str]
) -> tuple[Any, ...]:
    return (controller_id, system, *sorted(set(categories)), "|", *sorted(set(purposes)))


async def seed_profiles(
    session: AsyncSession, population: Population
) -> dict[tuple[Any, ...], uuid.UUID]:
    """Every profile the population uses, with its ranked rules, written before the records."""
    rules = await engine.load_rulebook(session)
    ids: dict[tuple[Any, ...], uuid.UUID] = {}
    rows, category_rows, purpose_rows = [], [], []
    for index in range(PROFILE_PERIOD):
        controller, system = population.controller_of(index), system_of(index)
        categories = sorted(set(_data.categories_of(index)))
        purposes = [_data.PURPOSES[(index // 7) % 3]]
        key = _profile_key(controller, system, categories, purposes)
        if key in ids:
            continue
        ids[key] = profile_id = new_id()
        facts = engine.ProfileFacts(controller, system, None, tuple(categories), tuple(purposes))
        rows.append(
            {
                "id": profile_id,
                "fingerprint": fingerprint(categories, purposes, controller, system, None),
                "controller_id": controller,
                "system": system,
                "region": None,
                "categories": categories,
                "purposes": purposes,
                "ranked_rules": engine.encode_ranked(rules.ranked(facts)),
            }
        )
        category_rows += [{"profile_id": profile_id, "category": c} for c in categories]
        purpose_rows += [{"profile_id": profile_id, "purpose": p} for p in purposes]
    await session.execute(insert(RecordProfile), rows)
    await session.execute(insert(RecordProfileCategory), category_rows)
    await session.execute(insert(RecordProfilePurpose), purpose_rows)
    await session.commit()
    return ids


def hash_subjects(first: int, last: int) -> list[list[tuple[str, str, str]]]:
    """(type, digest, key id) of each subject's identities, as registration stores them:
    every hash `BlindIndexer.all_of` gives (email and phone hashes do not depend on the
    controller; only external_id ones do). Runs in a worker process."""
    blind = _data.indexer()
    out = []
    for subject in range(first, last):
        digests: dict[str, tuple[str, str, str]] = {}
        for raw in _data.subject_identities(subject):
            for d in blind.all_of(Identity.model_validate(raw)):
                digests.setdefault(d.digest, (str(d.type), d.digest, d.key_id))
        out.append(list(digests.values()))
    return out


def _rows(
    start: int,
    end: int,
    subjects: list[list[tuple[str, str, str]]],
    population: Population,
    profiles: dict[tuple[Any, ...], uuid.UUID],
    now: datetime,
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Record and identity rows in `_data.RECORD_COLUMNS` / `IDENTITY_COLUMNS` order. The
    stored decision is the P1Y rule's (delete_by = collected_at + 1 year), which
    `tests.benchmarks.load_model` checks by running the service's recompute over them."""
    records, identities = [], []
    first_subject = _data.subject_of(start)
    for index in range(start, end):
        record_id = new_id()
        controller, system = population.controller_of(index), system_of(index)
        categories = _data.categories_of(index)
        purposes = [_data.PURPOSES[(index // 7) % 3]]
        collected = _data.collected_at(index)
        profile = profiles[_profile_key(controller, system, categories, purposes)]
        records.append(
            (
                record_id,
                system,
                f"ref-{index:08d}",
                controller,
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
        for kind, digest, key_id in subjects[_data.subject_of(index) - first_subject]:
            identities.append((record_id, kind, digest, key_id))
    return records, identities


def pg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def copy_records(
    url: str,
    population: Population,
    profiles: dict[tuple[Any, ...], uuid.UUID],
    start: int,
    end: int,
    *,
    progress: Callable[[int], Awaitable[None]] | None = None,
) -> float:
    """COPY records start..end-1 and their identities; returns records per second. Hashing
    of the next chunk (two processes) overlaps the COPY of this one."""
    assert start % 2 == 0 and end % 2 == 0
    loop = asyncio.get_running_loop()
    connection = await asyncpg.connect(pg_dsn(url))
    now = datetime.now(UTC)
    chunks = [(s, min(s + CHUNK, end)) for s in range(start, end, CHUNK)]
    started = time.perf_counter()
    with ProcessPoolExecutor(2) as pool:

        def submit(s: int, e: int) -> asyncio.Future[list[list[tuple[str, str, str]]]]:
            halfway = (_data.subject_of(s) + _data.subject_of(e)) // 2
            parts = [
                loop.run_in_executor(pool, hash_subjects, _data.subject_of(s), halfway),
                loop.run_in_executor(pool, hash_subjects, halfway, _data.subject_of(e)),
            ]
            return asyncio.ensure_future(_joined(parts))

        pending = submit(*chunks[0]) if chunks else None
        try:
            for n, (s, e) in enumerate(chunks):
                assert pending is not None
                subjects = await pending
                pending = submit(*chunks[n + 1]) if n + 1 < len(chunks) else None
                records, identities = _rows(s, e, subjects, population, profiles, now)
                async with connection.transaction():
                    await connection.copy_records_to_table(
                        "records", records=records, columns=_data.RECORD_COLUMNS
                    )
                    await connection.copy_records_to_table(
                        "record_identities", records=identities, columns=_data.IDENTITY_COLUMNS
                    )
                if progress is not None:
                    await progress(e)
        finally:
            if pending is not None:
                pending.cancel()
            await connection.close()
    return (end - start) / (time.perf_counter() - started)


async def _joined(
    parts: list[asyncio.Future[list[list[tuple[str, str, str]]]]],
) -> list[list[tuple[str, str, str]]]:
    return [row for part in await asyncio.gather(*parts) for row in part]
