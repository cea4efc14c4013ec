"""A registered population for the load model and the growth benchmark: the generator of
`_data` spread over ten systems and five controllers (Spix and four customers), written
with PostgreSQL COPY. Identities are hashed by the service's own BlindIndexer, in a pool of
processes while the previous chunk is copied.

Subject s owns records 2s and 2s+1 (`_data.subject_of`), in two adjacent systems. Record
2s is held for Spix; record 2s+1 for Spix when s is odd and for a customer when s is even, so
half the subjects have a customer scope that waits for the customer's decision."""

from __future__ import annotations

import asyncio
import io
import random
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

from app.core.identity import Identity, IdentityType, sha256_input, version_label
from app.core.ids import new_id
from app.records.models import RecordProfile, RecordProfileCategory, RecordProfilePurpose
from app.records.profiles import fingerprint
from app.retention import engine
from app.retention.policy import add_period
from app.systems.models import System
from tests.benchmarks import _data
from tests.builders import TEST_SUBJECT_KEY, make_controller, make_system

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
    """(type, digest, key id) of each subject's identities, as registration stores them.
    Runs in a worker process.

    Parsing a phone number costs about 150 µs, too much for ten million records, so the
    generator's identities are hashed from their normal forms (written out below) by the
    service's own keyed hash; every 500th subject is hashed the whole way, as registration
    does (`BlindIndexer.all_of`: every normalisation version in use), and must agree.
    Email and phone hashes do not depend on the controller (only external_id ones do)."""
    blind = _data.indexer()
    companion = version_label(blind.key_id, 2, companion=True)
    out = []
    for subject in range(first, last):
        exchange, line = 200 + subject // 10000, subject % 10000
        # The current version's hash (over the normal form's SHA-256), then the version-2
        # companion (over the normal form itself), as `all_of` lists them.
        fast = [
            hashed
            for kind, normal in (
                (IdentityType.email, f"user{subject}@example.com"),
                (IdentityType.phone, f"+1212{exchange:03d}{line:04d}"),
            )
            for hashed in (
                (kind, blind._hash(kind, sha256_input(kind, normal)), blind.label),
                (kind, blind._hash(kind, normal), companion),
            )
        ]
        rows = [(str(kind), digest, label) for kind, digest, label in fast]
        if subject % 500 == 0:
            full = [
                (str(d.type), d.digest, d.key_id)
                for raw in _data.subject_identities(subject)
                for d in blind.all_of(Identity.model_validate(raw))
            ]
            assert full == rows, f"subject {subject}: the fast hashes differ from the service's"
        out.append(rows)
    return out


def build_chunk(
    start: int,
    end: int,
    population: Population,
    profiles: dict[tuple[Any, ...], uuid.UUID],
    now: datetime,
) -> tuple[bytes, bytes]:
    """Records start..end-1 and their identities as COPY text, in `_data.RECORD_COLUMNS` /
    `IDENTITY_COLUMNS` order (text crosses the process boundary far faster than row
    objects). The stored decision is the P1Y rule's (delete_by = collected_at + 1 year),
    which `tests.benchmarks.load_model` checks by running the service's recompute over
    them. Runs in a worker process."""
    subjects = hash_subjects(_data.subject_of(start), _data.subject_of(end))
    first_subject = _data.subject_of(start)
    # Controller, system and profile repeat every PROFILE_PERIOD records.
    cycle = []
    for offset in range(PROFILE_PERIOD):
        controller, system = population.controller_of(offset), system_of(offset)
        categories = _data.categories_of(offset)
        purposes = [_data.PURPOSES[(offset // 7) % 3]]
        cycle.append(
            f"{system}\t{{ref}}\t{controller}\t"
            f"{profiles[_profile_key(controller, system, categories, purposes)]}"
        )
    stamp = now.isoformat()
    records, identities = [], []
    for index in range(start, end):
        record_id = str(new_id())
        collected = _data.collected_at(index)
        deadline = add_period(collected, _data.ONE_YEAR)
        placed = cycle[index % PROFILE_PERIOD].format(ref=f"ref-{index:08d}")
        # last_activity_at, events, state, created_at, updated_at, erased_at, held,
        # keep_until, keep_indefinitely, delete_by, action
        records.append(
            f"{record_id}\t{placed}\t{collected.isoformat()}\t\\N\t{{}}\tactive\t{stamp}\t"
            f"{stamp}\t\\N\tf\t\\N\tf\t{deadline.isoformat()}\tdelete"
        )
        for kind, digest, key_id in subjects[_data.subject_of(index) - first_subject]:
            identities.append(f"{record_id}\t{kind}\t{digest}\t{key_id}")
    return ("\n".join(records) + "\n").encode(), ("\n".join(identities) + "\n").encode()


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
    """COPY records start..end-1 and their identities; returns records per second. Two
    processes build the next chunks' rows while this one copies."""
    assert start % 2 == 0 and end % 2 == 0
    loop = asyncio.get_running_loop()
    connection = await asyncpg.connect(pg_dsn(url))
    now = datetime.now(UTC)
    chunks = [(s, min(s + CHUNK, end)) for s in range(start, end, CHUNK)]
    started = time.perf_counter()
    with ProcessPoolExecutor(2) as pool:
        building = [
            loop.run_in_executor(pool, build_chunk, s, e, population, profiles, now)
            for s, e in chunks[:3]
        ]
        try:
            for n, (_, e) in enumerate(chunks):
                records, identities = await building[n]
                if n + 3 < len(chunks):
                    s3, e3 = chunks[n + 3]
                    building.append(
                        loop.run_in_executor(pool, build_chunk, s3, e3, population, profiles, now)
                    )
                async with connection.transaction():
                    await connection.copy_to_table(
                        "records", source=io.BytesIO(records), columns=_data.RECORD_COLUMNS
                    )
                    await connection.copy_to_table(
                        "record_identities",
                        source=io.BytesIO(identities),
                        columns=_data.IDENTITY_COLUMNS,
                    )
                if progress is not None:
                    await progress(e)
        finally:
            for future in building:
                future.cancel()
            await connection.close()
    return (end - start) / (time.perf_counter() - started)


# The same population generated inside PostgreSQL, for the growth benchmark: at 10,000,000
# records a Python builder on a shared 2-core machine writes about 1,000-2,000 records/s, the
# database's own INSERT ... SELECT many times that. `check_sample` holds it to the Python
# generator and the service's hashing.

_ID = (
    "(lpad(to_hex(i), 12, '0') || '7' || lpad(to_hex(i % 4096), 3, '0') || '8'"
    " || substr(md5(i::text || $3), 1, 15))::uuid"
)
_SUBJECT = "(i / 2)"
# Each subject's identities in their normal form, as SQL over the record's number `i`.
_NORMAL = (
    ("email", f"'user' || {_SUBJECT} || '@example.com'"),
    (
        "phone",
        f"'+1212' || lpad((200 + {_SUBJECT} / 10000)::text, 3, '0')"
        f" || lpad(({_SUBJECT} % 10000)::text, 4, '0')",
    ),
)


def _keyed_inputs(label: str) -> list[tuple[str, str, str]]:
    """(type, HMAC input as SQL, stored label) of every hash registration stores for an
    identity: the current version's (over the SHA-256 of the normal form) and its version-2
    companion (over the normal form itself), as app/core/identity.py computes them."""
    key_id = label.rpartition(".")[0]
    companion = version_label(key_id, 2, companion=True)
    inputs = []
    for kind, normal in _NORMAL:
        current = f"'{kind}:' || encode(sha256(convert_to({normal}, 'UTF8')), 'hex')"
        inputs += [(kind, current, label), (kind, f"'{kind}:' || {normal}", companion)]
    return inputs


async def insert_records_sql(
    url: str,
    population: Population,
    profiles: dict[tuple[Any, ...], uuid.UUID],
    start: int,
    end: int,
    *,
    chunk: int = 500_000,
) -> float:
    """Records start..end-1 and their identity hashes, written by INSERT ... SELECT over
    generate_series: ids shaped like the service's UUIDv7 (ordered by index), the
    generator's systems, controllers, profiles and collection dates, delete_by one year
    later (the P1Y rule), and the identities' HMAC-SHA256 under the test subject key
    (pgcrypto). Returns records per second."""
    connection = await asyncpg.connect(pg_dsn(url))
    blind = _data.indexer()
    salt = uuid.uuid4().hex
    started = time.perf_counter()
    try:
        await connection.execute("SET TimeZone = 'UTC'")
        await connection.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
        await connection.execute(
            "CREATE TEMP TABLE IF NOT EXISTS population_cycle"
            " (position int PRIMARY KEY, controller_id uuid, system text, profile_id uuid)"
        )
        await connection.execute("TRUNCATE population_cycle")
        cycle = []
        for offset in range(PROFILE_PERIOD):
            controller, system = population.controller_of(offset), system_of(offset)
            categories = _data.categories_of(offset)
            purposes = [_data.PURPOSES[(offset // 7) % 3]]
            profile = profiles[_profile_key(controller, system, categories, purposes)]
            cycle.append((offset, controller, system, profile))
        await connection.copy_records_to_table("population_cycle", records=cycle)
        epoch = _data.EPOCH.isoformat()
        # Secondary indexes are built once after the rows, as a bulk load would: maintaining
        # the digest index row by row is random I/O (constraints' indexes stay).
        secondary = await connection.fetch(
            "SELECT indexname, indexdef FROM pg_indexes"
            " WHERE tablename IN ('records', 'record_identities')"
            " AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        )
        for index in secondary:
            await connection.execute(f'DROP INDEX "{index["indexname"]}"')
        for first in range(start, end, chunk):
            last = min(first + chunk, end)
            async with connection.transaction():
                await connection.execute(
                    "INSERT INTO records (id, system, record_ref, controller_id, profile_id,"
                    " collected_at, events, state, created_at, updated_at, held,"
                    " keep_indefinitely, delete_by, action)"
                    f" SELECT {_ID}, c.system, 'ref-' || lpad(i::text, 8, '0'), c.controller_id,"
                    " c.profile_id, t.at, '{}', 'active', now(), now(), false, false,"
                    " t.at + interval '1 year', 'delete'"
                    " FROM generate_series($1::bigint, $2::bigint - 1) AS i"
                    f" JOIN population_cycle c ON c.position = i % {PROFILE_PERIOD}"
                    f" CROSS JOIN LATERAL (SELECT timestamptz '{epoch}'"
                    f" + ((i * 2654435761) % {_data.SPREAD_SECONDS})"
                    " * interval '1 second' AS at) t",
                    first,
                    last,
                    salt,
                )
                for kind, text, label in _keyed_inputs(blind.label):
                    await connection.execute(
                        "INSERT INTO record_identities (record_id, identity_type, digest, key_id)"
                        f" SELECT {_ID}, '{kind}', encode(hmac({text}, $4, 'sha256'), 'hex'), $5"
                        " FROM generate_series($1::bigint, $2::bigint - 1) AS i",
                        first,
                        last,
                        salt,
                        TEST_SUBJECT_KEY,
                        label,
                    )
            print(f"  inserted {last:,} records", flush=True)
        built = time.perf_counter()
        for index in secondary:
            await connection.execute(index["indexdef"])
        print(
            f"  built {len(secondary)} indexes in {time.perf_counter() - built:.0f} s", flush=True
        )
    finally:
        await connection.close()
    return (end - start) / (time.perf_counter() - started)


async def check_sample(
    url: str, population: Population, profiles: dict[tuple[Any, ...], uuid.UUID], size: int
) -> int:
    """Rows of 200 random records (and the first and last) against the Python generator,
    and their identity hashes against the service's BlindIndexer. Returns how many."""
    blind = _data.indexer()
    picks = {0, size - 1, *random.Random(size).sample(range(size), min(200, size))}
    connection = await asyncpg.connect(pg_dsn(url))
    try:
        for index in sorted(picks):
            system = system_of(index)
            row = await connection.fetchrow(
                "SELECT id, controller_id, profile_id, collected_at, delete_by FROM records"
                " WHERE system = $1 AND record_ref = $2",
                system,
                f"ref-{index:08d}",
            )
            assert row is not None, index
            controller = population.controller_of(index)
            categories = _data.categories_of(index)
            purposes = [_data.PURPOSES[(index // 7) % 3]]
            collected = _data.collected_at(index)
            assert row["controller_id"] == controller
            assert (
                row["profile_id"]
                == profiles[_profile_key(controller, system, categories, purposes)]
            )
            assert row["collected_at"] == collected
            assert row["delete_by"] == add_period(collected, _data.ONE_YEAR)
            stored = {
                (r["identity_type"], r["digest"], r["key_id"])
                for r in await connection.fetch(
                    "SELECT identity_type, digest, key_id FROM record_identities"
                    " WHERE record_id = $1",
                    row["id"],
                )
            }
            expected = {
                (str(d.type), d.digest, d.key_id)
                for raw in _data.subject_identities(_data.subject_of(index))
                for d in blind.all_of(Identity.model_validate(raw))
            }
            assert stored == expected, f"record {index}: hashes differ from the service's"
    finally:
        await connection.close()
    return len(picks)
