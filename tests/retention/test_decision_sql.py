"""The SQL that recomputes stored decisions agrees with the policy, record by record, on both
databases: random rules (both kinds, every anchor, periods across month ends, both actions,
scopes that outrank each other), records dated on month ends and leap days with and without
their events, holds on a category, on identities and on records, and restriction; customers
whose agreement has ended (or will), so a contract end caps every rule source but `law`."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.identity import BlindIndexer, Identity
from app.legal_holds.models import LegalHold, LegalHoldIdentity, LegalHoldRecord
from app.records.importer import OPERATOR_PRINCIPAL
from app.records.models import Record, RecordIdentity, RecordProfile
from app.records.register import register
from app.retention import engine, policy
from app.retention.recompute import Scope, recompute, simulate
from tests.builders import (
    TEST_SUBJECT_KEY,
    make_category,
    make_controller,
    make_purpose,
    make_rule,
    make_system,
)

GROUPS = 8
LEAVES = [f"cat.g{i}.leaf" for i in range(GROUPS)]
PURPOSES = ["serve", "bill"]
PERIODS = ["P1M", "P1Y", "P1Y1M", "P13M", "P2W", "P30D", "P1M3D", "P3Y", "P0D", "P6M1W"]
ANCHORS = ["collected_at", "last_activity_at", "event:closed", "event:churned"]
# Month ends, leap days and year ends, where calendar arithmetic goes wrong.
DAYS = [
    (2024, 1, 31),
    (2024, 2, 29),
    (2023, 1, 31),
    (2023, 3, 31),
    (2024, 12, 31),
    (2023, 8, 31),
    (2024, 5, 15),
    (2020, 2, 29),
    (2025, 10, 31),
    (2026, 11, 30),
]


def _moment(rng: random.Random) -> datetime:
    year, month, day = rng.choice(DAYS)
    return datetime(year, month, day, tzinfo=UTC) + timedelta(
        seconds=rng.randrange(86400), microseconds=rng.choice([0, 1, 999_999, 123_456])
    )


def _iso(moment: datetime) -> str:
    # Times of things that happened: never in the future (the API refuses those).
    return min(moment, datetime.now(UTC)).isoformat()


SOURCES = ["law", "contract", "platform_default", "customer_setting"]


async def _world(session: AsyncSession, rng: random.Random) -> list[uuid.UUID]:
    """The controllers: the platform's id first (twice, so half the records are its own),
    then the customers'."""
    controller = await make_controller(session, kind="platform", name="Spix")
    customers: list[uuid.UUID] = []
    # Customers: one whose agreement ended, one ending on a month's end, one with no end.
    for until in (date(2024, 1, 31), date(2026, 11, 30), None):
        customer = await make_controller(session, name=f"Customer {until}", effective_until=until)
        customers.append(customer.id)
    await make_system(session, "sys")
    for key in LEAVES:
        await make_category(session, key)
    for key in PURPOSES:
        await make_purpose(session, key)
    for group in range(GROUPS):
        for _ in range(rng.randint(0, 4)):
            scope: dict[str, Any] = {
                "category": rng.choice([LEAVES[group], LEAVES[group], f"cat.g{group}"])
            }
            if rng.random() < 0.2:
                scope["purpose"] = rng.choice(PURPOSES)
            if rng.random() < 0.15:
                scope["system"] = "sys"
            await make_rule(
                session,
                kind=rng.choice(policy.KINDS),
                period=rng.choice(PERIODS),
                anchor=rng.choice(ANCHORS),
                action=rng.choice(policy.ACTIONS),
                source=rng.choice(SOURCES),
                **scope,
            )
    # A customer's own longer setting, outranking the platform's by its controller.
    for customer_id in customers:
        await make_rule(
            session,
            kind=rng.choice(policy.KINDS),
            period=rng.choice(PERIODS),
            anchor=rng.choice(ANCHORS),
            source="customer_setting",
            category="cat",
            controller_id=customer_id,
        )
    # One rule over every group, so groups also mix with a shared, less specific rule.
    await make_rule(session, kind="maximum", period="P5Y", anchor="collected_at", category="cat")
    # And one that waits for an event, so some records are kept indefinitely.
    await make_rule(
        session, kind="minimum", period="P1M", anchor="event:closed", category=LEAVES[5]
    )
    return [controller.id, controller.id, *customers]


def _item(rng: random.Random, index: int, controllers: list[uuid.UUID]) -> dict[str, Any]:
    categories = [LEAVES[index % GROUPS]]
    if rng.random() < 0.2:
        categories.append(rng.choice(LEAVES))
    collected = _moment(rng)
    item: dict[str, Any] = {
        "system": "sys",
        "record_ref": f"ref-{index}",
        "controller_id": str(rng.choice(controllers)),
        "identities": [{"type": "email", "value": f"subject{index % 10}@example.com"}],
        "categories": categories,
        "purposes": rng.sample(PURPOSES, rng.randint(0, 2)),
        "collected_at": _iso(collected),
    }
    if rng.random() < 0.5:
        item["last_activity_at"] = _iso(collected + timedelta(days=rng.randrange(900)))
    events = {name: _iso(_moment(rng)) for name in ("closed", "churned") if rng.random() < 0.5}
    if events:
        item["events"] = events
    return item


async def _holds(session: AsyncSession, rng: random.Random, indexer: BlindIndexer) -> None:
    session.add(LegalHold(reason="on a category", category=LEAVES[1]))
    session.add(LegalHold(reason="released", category=LEAVES[2], released_at=datetime.now(UTC)))
    on_subject = LegalHold(reason="on a subject")
    session.add(on_subject)
    await session.flush()
    digest = indexer.of(Identity.model_validate({"type": "email", "value": "subject3@example.com"}))
    session.add(
        LegalHoldIdentity(
            hold_id=on_subject.id,
            identity_type=str(digest.type),
            digest=digest.digest,
            key_id=digest.key_id,
        )
    )
    await session.commit()


async def _hold_records(session: AsyncSession, rng: random.Random) -> None:
    ids = list((await session.scalars(select(Record.id).order_by(Record.record_ref))).all())
    on_records = LegalHold(reason="on records", system="sys")
    session.add(on_records)
    await session.flush()
    for record_id in rng.sample(ids, 7):
        session.add(LegalHoldRecord(hold_id=on_records.id, record_id=record_id))
    restricted = rng.sample(ids, 9)
    await session.execute(
        update(Record).where(Record.id.in_(restricted)).values(state="restricted")
    )
    await session.commit()


async def _expected(session: AsyncSession, rules: engine.RuleBook) -> dict[uuid.UUID, Any]:
    """Each record's decision by the policy, in Python, from what the database holds."""
    holds = await engine.load_holdbook(session)
    digests: dict[uuid.UUID, set[str]] = {}
    for record_id, digest in await session.execute(
        select(RecordIdentity.record_id, RecordIdentity.digest)
    ):
        digests.setdefault(record_id, set()).add(digest)
    decided = {}
    for record, profile in await session.execute(
        select(Record, RecordProfile).join(RecordProfile, RecordProfile.id == Record.profile_id)
    ):
        dates = engine.RecordDates(
            id=record.id,
            collected_at=record.collected_at,
            last_activity_at=record.last_activity_at,
            events=engine.parse_events(record.events),
            restricted=record.state == "restricted",
            digests=frozenset(digests.get(record.id, ())),
        )
        facts = engine.profile_facts(profile)
        decided[record.id] = engine.decide(rules, holds, facts, dates, datetime.now(UTC))
    return decided


async def _stored(session: AsyncSession) -> dict[uuid.UUID, dict[str, Any]]:
    rows = await session.execute(
        select(
            Record.id,
            Record.held,
            Record.keep_until,
            Record.keep_indefinitely,
            Record.delete_by,
            Record.action,
        )
    )
    return {row.id: dict(row._mapping) for row in rows}


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_recompute_in_sql_agrees_with_the_policy(session: AsyncSession, seed: int) -> None:
    rng = random.Random(seed)
    controllers = await _world(session, rng)
    indexer = BlindIndexer(TEST_SUBJECT_KEY.encode(), "k1")
    await _holds(session, rng, indexer)
    items = [_item(rng, index, controllers) for index in range(240)]
    outcomes = await register(session, OPERATOR_PRINCIPAL, indexer, items)
    assert all(o.status == "created" for o in outcomes), [o.problem for o in outcomes]
    await session.commit()
    await _hold_records(session, rng)

    # Every stored column wrong, so the recompute has to write every one of them.
    await session.execute(
        update(Record).values(
            held=True,
            keep_until=datetime(1999, 1, 1, tzinfo=UTC),
            keep_indefinitely=True,
            delete_by=datetime(1999, 1, 1, tzinfo=UTC),
            action="anonymize",
        )
    )
    written = await recompute(session, [Scope()])
    await session.commit()

    rules = await engine.load_rulebook(session)
    expected = await _expected(session, rules)
    stored = await _stored(session)
    assert written == len(expected) == 240
    mismatches = [
        (record_id, stored[record_id], engine.stored_columns(decision))
        for record_id, decision in expected.items()
        if stored[record_id] | {"id": None} != engine.stored_columns(decision) | {"id": None}
    ]
    assert mismatches == []
    # The spread is real: every status and both actions occur.
    statuses = {d.status for d in expected.values()}
    assert statuses >= {"held", "retain", "due"}, statuses
    assert {d.action for d in expected.values()} == {"delete", "anonymize"}
    assert any(d.keep_indefinitely for d in expected.values())
    # Contract ends decide some records, and a law minimum keeps others past theirs.
    ended = [d for d in expected.values() if d.contract_end is not None]
    assert any(d.delete_by == d.contract_end for d in ended)
    assert any(d.delete_by is not None and d.delete_by > d.contract_end for d in ended)

    # Nothing left to change: a second recompute writes no row.
    assert await recompute(session, [Scope()]) == 0


def _near_the_end(moment: datetime, rng: random.Random) -> datetime:
    """The same day of the year, microsecond and time of day, in one of the calendar's last
    years: rule ends run past year 9999 and saturate, or stop just short of it."""
    year = rng.choice([9994, 9996, 9998, 9999])
    day = min(moment.day, 28) if moment.month == 2 and moment.day == 29 else moment.day
    return moment.replace(year=year, day=day)


@pytest.mark.parametrize("seed", [7, 8])
async def test_recompute_in_sql_saturates_like_the_policy_at_the_end_of_time(
    session: AsyncSession, seed: int
) -> None:
    """Dates the API refuses but a database may hold (written here straight to the table):
    Python and both databases saturate at policy.END_OF_TIME, record by record alike."""
    rng = random.Random(seed)
    controllers = await _world(session, rng)
    indexer = BlindIndexer(TEST_SUBJECT_KEY.encode(), "k1")
    items = [_item(rng, index, controllers) for index in range(160)]
    outcomes = await register(session, OPERATOR_PRINCIPAL, indexer, items)
    assert all(o.status == "created" for o in outcomes), [o.problem for o in outcomes]
    await session.commit()
    for record in (await session.scalars(select(Record))).all():
        record.collected_at = _near_the_end(record.collected_at, rng)
        if record.last_activity_at is not None:
            record.last_activity_at = _near_the_end(record.last_activity_at, rng)
        record.events = {
            name: _near_the_end(at, rng).isoformat(timespec="microseconds")
            for name, at in engine.parse_events(record.events).items()
        }
    await session.commit()

    written = await recompute(session, [Scope()])
    await session.commit()
    rules = await engine.load_rulebook(session)
    expected = await _expected(session, rules)
    stored = await _stored(session)
    assert written > 0
    mismatches = [
        (record_id, stored[record_id], engine.stored_columns(decision))
        for record_id, decision in expected.items()
        if stored[record_id] | {"id": None} != engine.stored_columns(decision) | {"id": None}
    ]
    assert mismatches == []
    ends = [d.delete_by for d in expected.values() if d.delete_by is not None]
    assert policy.END_OF_TIME in ends  # some saturate
    assert any(end < policy.END_OF_TIME for end in ends)  # and some stop short
    assert max(ends) == policy.END_OF_TIME
    assert await recompute(session, [Scope()]) == 0


@pytest.mark.parametrize("seed", [5, 6])
async def test_simulation_counts_what_the_policy_would_change(
    session: AsyncSession, seed: int
) -> None:
    rng = random.Random(seed)
    controllers = await _world(session, rng)
    controller_id = controllers[0]
    indexer = BlindIndexer(TEST_SUBJECT_KEY.encode(), "k1")
    await _holds(session, rng, indexer)
    items = [_item(rng, index, controllers) for index in range(160)]
    await register(session, OPERATOR_PRINCIPAL, indexer, items)
    await session.commit()

    now = datetime.now(UTC)
    proposed = policy.Rule(
        id=str(uuid.uuid4()),
        kind="maximum",
        period=policy.parse_period("P1Y1M"),
        anchor="last_activity_at",
        action="anonymize",
        category=LEAVES[3],
        # Scoped to the controller: more specific than any rule there, so it decides.
        controller_id=controller_id,
    )
    current = await engine.load_rulebook(session)
    before = await _expected(session, current)
    after = await _expected(
        session, engine.RuleBook([*current.rules, proposed], current.contract_ends)
    )
    matched = due = changed = 0
    for record_id, decision in after.items():
        if not any(o.rule_id == proposed.id for o in decision.rules):
            continue
        matched += 1
        old = before[record_id]
        due += decision.status == "due" and old.status != "due"
        dated = ("keep_until", "keep_indefinitely", "delete_by", "action")
        changed += any(getattr(old, name) != getattr(decision, name) for name in dated)
    assert matched > 0 and changed > 0

    result = await simulate(
        session, proposed, Scope(category=LEAVES[3], controller_id=controller_id), now=now
    )
    assert (result.records_matched, result.would_become_due, result.would_change) == (
        matched,
        due,
        changed,
    )
