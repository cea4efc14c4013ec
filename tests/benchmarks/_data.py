"""Shared pieces of the benchmarks: a deterministic record generator, the registry it needs,
raw-driver writers for the baseline, and small measuring helpers (RSS, CPU, percentiles)."""

from __future__ import annotations

import os
import sqlite3
import statistics
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import create_key
from app.core.db import Database
from app.core.identity import BlindIndexer, Identity
from app.core.ids import new_id
from app.records.models import RecordProfile, RecordProfileCategory, RecordProfilePurpose
from app.records.profiles import fingerprint
from app.retention import engine
from app.retention.policy import add_period, parse_period
from tests.builders import (
    TEST_SUBJECT_KEY,
    make_category,
    make_controller,
    make_purpose,
    make_rule,
    make_system,
)

SYSTEM = "accounts"
ROOT_CATEGORY = "account"
CATEGORIES = [f"{ROOT_CATEGORY}.{leaf}" for leaf in ("profile", "contact", "billing", "usage")] + [
    f"{ROOT_CATEGORY}.support"
]
PURPOSES = ["service.provide", "billing.invoice", "support.help"]
BATCH = 1000
# Collection dates spread over six years that ended long ago, so a P1Y or P2Y maximum rule on
# the root category makes every record due.
EPOCH = datetime(2015, 1, 1, tzinfo=UTC)
SPREAD_SECONDS = 6 * 365 * 86400


def bench_records() -> int:
    return int(os.environ.get("SPIX_DSR_BENCH_RECORDS", "1000000"))


def slice_size(total: int) -> int:
    """100k slices at full size; five slices on a small development run."""
    if total >= 500_000:
        return 100_000
    return max(BATCH, (total // 5) // BATCH * BATCH)


def indexer() -> BlindIndexer:
    return BlindIndexer(TEST_SUBJECT_KEY.encode(), "k1")


# The generator ----------------------------------------------------------------------------


def subject_of(index: int) -> int:
    # Two records per subject, so a lookup finds more than one record.
    return index // 2


def subject_identities(subject: int) -> list[dict[str, str]]:
    return [
        {"type": "email", "value": f"User{subject}@Example.com"},
        {"type": "phone", "value": f"+1 212 {200 + subject // 10000:03d} {subject % 10000:04d}"},
    ]


def categories_of(index: int) -> list[str]:
    first = CATEGORIES[index % 5]
    second = CATEGORIES[(index // 5) % 5]
    return [first, second] if index % 3 == 0 and second != first else [first]


def collected_at(index: int) -> datetime:
    return EPOCH + timedelta(seconds=(index * 2654435761) % SPREAD_SECONDS)


def record_item(index: int, controller_id: uuid.UUID) -> dict[str, Any]:
    return {
        "system": SYSTEM,
        "record_ref": f"ref-{index:08d}",
        "controller_id": str(controller_id),
        "identities": subject_identities(subject_of(index)),
        "categories": categories_of(index),
        "purposes": [PURPOSES[(index // 7) % 3]],
        "collected_at": collected_at(index).isoformat(),
    }


def batches(
    total: int, controller_id: uuid.UUID, size: int = BATCH
) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, total, size):
        yield [record_item(i, controller_id) for i in range(start, min(start + size, total))]


# The registry the records refer to ------------------------------------------------------


@dataclass(frozen=True)
class World:
    controller_id: uuid.UUID
    rule_id: uuid.UUID


async def seed_registry(session: AsyncSession) -> World:
    """A controller, the system, the categories and purposes, and one maximum rule (P1Y on the
    root category) so every record gets a stored delete_by."""
    controller = await make_controller(session, kind="platform", name="Spix")
    await make_system(session, SYSTEM)
    for key in CATEGORIES:
        await make_category(session, key)
    for key in PURPOSES:
        await make_purpose(session, key)
    rule = await make_rule(
        session, kind="maximum", period="P1Y", anchor="collected_at", category=ROOT_CATEGORY
    )
    return World(controller.id, rule.id)


async def admin_headers(session: AsyncSession) -> dict[str, str]:
    created = await create_key(session, role="admin", name="benchmark")
    await session.commit()
    return {"Authorization": f"Bearer {created.secret}"}


# The raw-driver baseline ----------------------------------------------------------------

RECORD_COLUMNS = (
    "id",
    "system",
    "record_ref",
    "controller_id",
    "profile_id",
    "collected_at",
    "last_activity_at",
    "events",
    "state",
    "created_at",
    "updated_at",
    "erased_at",
    "held",
    "keep_until",
    "keep_indefinitely",
    "delete_by",
    "action",
)
IDENTITY_COLUMNS = ("record_id", "identity_type", "digest", "key_id")
ONE_YEAR = parse_period("P1Y")


def _profile_key(categories: Sequence[str], purposes: Sequence[str]) -> tuple[str, ...]:
    return (*sorted(set(categories)), "|", *sorted(set(purposes)))


async def seed_profiles(session: AsyncSession, world: World) -> dict[tuple[str, ...], uuid.UUID]:
    """Every profile the generator produces (its pattern repeats every 525 records), written
    up front so the raw baseline times records and identities only."""
    wanted: dict[tuple[str, ...], tuple[list[str], list[str]]] = {}
    for item in (record_item(i, world.controller_id) for i in range(1050)):
        key = _profile_key(item["categories"], item["purposes"])
        wanted[key] = (sorted(set(item["categories"])), sorted(set(item["purposes"])))
    ids: dict[tuple[str, ...], uuid.UUID] = {}
    rows, category_rows, purpose_rows = [], [], []
    rules = await engine.load_rulebook(session)
    for key, (categories, purposes) in wanted.items():
        ids[key] = profile_id = new_id()
        facts = engine.ProfileFacts(
            world.controller_id, SYSTEM, None, tuple(categories), tuple(purposes)
        )
        rows.append(
            {
                "id": profile_id,
                "fingerprint": fingerprint(categories, purposes, world.controller_id, SYSTEM, None),
                "controller_id": world.controller_id,
                "system": SYSTEM,
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


def raw_rows(
    items: list[dict[str, Any]],
    world: World,
    profiles: dict[tuple[str, ...], uuid.UUID],
    blind: BlindIndexer,
    now: datetime,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What registration would write for these items, computed before any timing starts."""
    records, identities = [], []
    for item in items:
        record_id = new_id()
        collected = datetime.fromisoformat(item["collected_at"])
        delete_by = add_period(collected, ONE_YEAR)
        records.append(
            {
                "id": record_id,
                "system": SYSTEM,
                "record_ref": item["record_ref"],
                "controller_id": world.controller_id,
                "profile_id": profiles[_profile_key(item["categories"], item["purposes"])],
                "collected_at": collected,
                "last_activity_at": None,
                "events": {},
                "state": "active",
                "created_at": now,
                "updated_at": now,
                "erased_at": None,
                "held": False,
                "keep_until": None,
                "keep_indefinitely": False,
                "delete_by": delete_by,
                "action": "delete",
            }
        )
        for raw in item["identities"]:
            digest = blind.of(Identity.model_validate(raw))
            identities.append(
                {
                    "record_id": record_id,
                    "identity_type": str(digest.type),
                    "digest": digest.digest,
                    "key_id": digest.key_id,
                }
            )
    return records, identities


def _insert_sql(table: str, columns: Sequence[str], placeholder: str) -> str:
    marks = ", ".join(placeholder.format(n=n) for n in range(1, len(columns) + 1))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


def _sqlite_value(value: Any) -> Any:
    # The shapes SQLAlchemy stores on SQLite: hex UUIDs, naive UTC text dates, JSON text.
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if isinstance(value, bool):
        return int(value)
    return value


def _pg_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return value


class RawWriter:
    """The driver's own executemany, one transaction per batch, as the API commits per request."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.sqlite: sqlite3.Connection | None = None
        self.pg: asyncpg.Connection | None = None

    async def open(self) -> None:
        if self.url.get_backend_name() == "sqlite":
            assert self.url.database is not None
            self.sqlite = sqlite3.connect(self.url.database, isolation_level=None)
            # The app's own connection settings (app.core.db._configure_sqlite).
            for pragma in (
                "PRAGMA journal_mode=WAL",
                "PRAGMA foreign_keys=ON",
                "PRAGMA synchronous=NORMAL",
                "PRAGMA cache_size=-65536",
            ):
                self.sqlite.execute(pragma)
        else:
            dsn = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self.pg = await asyncpg.connect(dsn)

    async def close(self) -> None:
        if self.sqlite is not None:
            self.sqlite.close()
        if self.pg is not None:
            await self.pg.close()

    def prepare(
        self, records: list[dict[str, Any]], identities: list[dict[str, Any]]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        convert = _sqlite_value if self.sqlite is not None else _pg_value
        return (
            [tuple(convert(row[c]) for c in RECORD_COLUMNS) for row in records],
            [tuple(convert(row[c]) for c in IDENTITY_COLUMNS) for row in identities],
        )

    async def write(
        self, records: list[tuple[Any, ...]], identities: list[tuple[Any, ...]]
    ) -> None:
        if self.sqlite is not None:
            self.sqlite.execute("BEGIN IMMEDIATE")
            self.sqlite.executemany(_insert_sql("records", RECORD_COLUMNS, "?"), records)
            self.sqlite.executemany(
                _insert_sql("record_identities", IDENTITY_COLUMNS, "?"), identities
            )
            self.sqlite.execute("COMMIT")
            return
        assert self.pg is not None
        async with self.pg.transaction():
            await self.pg.executemany(_insert_sql("records", RECORD_COLUMNS, "${n}"), records)
            await self.pg.executemany(
                _insert_sql("record_identities", IDENTITY_COLUMNS, "${n}"), identities
            )


# Statistics -----------------------------------------------------------------------------


class Analyzer:
    """ANALYZE as autovacuum would (after 50 + 10% of the table changed), outside the timed
    parts. The PostgreSQL this runs on may have autovacuum off: a table that grew from empty
    without statistics gets plans chosen for an empty table, which production never sees."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.enabled = database.engine.dialect.name == "postgresql"
        self.analyzed_at = 0
        self.runs = 0

    async def autovacuum_setting(self) -> str:
        if not self.enabled:
            return "n/a (SQLite)"
        async with self.database.engine.connect() as connection:
            return str(await connection.scalar(text("SHOW autovacuum")))

    async def maybe(self, rows: int) -> None:
        if self.enabled and rows - self.analyzed_at >= 50 + self.analyzed_at // 10:
            await self.now()
            self.analyzed_at = rows

    async def now(self) -> None:
        if not self.enabled:
            return
        async with self.database.engine.connect() as connection:
            await connection.execute(text("ANALYZE"))
            await connection.commit()
        self.runs += 1


# Measuring ------------------------------------------------------------------------------


def _status_kib(field: str, pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_mib(pid: int | str = "self") -> float:
    return _status_kib("VmRSS", pid) / 1024


def peak_rss_mib(pid: int | str = "self") -> float:
    """The most RSS the process has held since it started (or since `reset_peak_rss`)."""
    return _status_kib("VmHWM", pid) / 1024


def memory_mib(pid: int) -> tuple[float, float]:
    """RSS now and each process's peak RSS, summed over a process and its live children
    (`serve --workers`), in MiB."""
    processes = (pid, *_children(pid))
    return sum(rss_mib(p) for p in processes), sum(peak_rss_mib(p) for p in processes)


def reset_peak_rss() -> bool:
    """Start VmHWM afresh (Linux 4.0+); False where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def cpu_seconds(pid: int) -> float:
    """User + system CPU so far of a process and its live children (`serve --workers`)."""
    total = 0.0
    for process in (pid, *_children(pid)):
        try:
            text = Path(f"/proc/{process}/stat").read_text()
        except FileNotFoundError:  # it ended meanwhile
            continue
        total += _stat_cpu(text.rsplit(")", 1)[1])
    return total


def _stat_cpu(after_name: str) -> float:
    """User + system CPU seconds from a /proc/<pid>/stat line's fields after `(name)`."""
    fields = after_name.split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds_named(command: str) -> float | None:
    """User + system CPU so far of every live process of this machine whose command is
    `command` (PostgreSQL's postmaster, backends and helpers are all `postgres`); None when
    there is none (the database runs elsewhere)."""
    total, found = 0.0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except (FileNotFoundError, ProcessLookupError):  # it ended meanwhile
            continue
        name, _, rest = text.partition(" (")[2].rpartition(")")
        if name != command:
            continue
        total += _stat_cpu(rest)
        found = True
    return total if found else None


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = task / "children"
        if children.exists():
            found += [int(child) for child in children.read_text().split()]
    return [*found, *(grandchild for child in found for grandchild in _children(child))]


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=1000, method="inclusive")[round(pct * 10) - 1]


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in header]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    line = "+".join("-" * (w + 2) for w in widths)
    print(f"\n{title}")
    print(line)
    for number, row in enumerate(cells):
        padded = (
            c.rjust(w) if n else c.ljust(w)
            for n, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        print(" " + " | ".join(padded))
        if number == 0:
            print(line)
    print(line)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
