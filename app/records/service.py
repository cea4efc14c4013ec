"""Registering records: set-based writes (a few statements per batch, never one per record),
with each record's retention decision computed and stored in the same transaction."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Table,
    bindparam,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import Principal
from app.auth.visibility import Visibility
from app.controllers.models import Controller
from app.core.db import any_of, utcnow
from app.core.errors import AppError, Conflict, Forbidden, NotFound, Unprocessable
from app.core.identity import BlindIndex, BlindIndexer, InvalidIdentity, parse_label
from app.core.ids import new_id
from app.core.pagination import cursor_uuid, decode_cursor, encode_cursor
from app.data_categories.models import DataCategory
from app.purposes.models import Purpose
from app.records.models import (
    Record,
    RecordIdentity,
    RecordProfile,
    RecordProfileCategory,
    RecordProfilePurpose,
)
from app.records.schemas import (
    BatchResult,
    IdentityDigest,
    ItemError,
    RecordIn,
    RecordOut,
    RecordPatch,
    RetentionDecision,
)
from app.retention import engine, grounds, policy
from app.systems.models import System

records_table: Table = Record.__table__  # type: ignore[assignment]
identities_table: Table = RecordIdentity.__table__  # type: ignore[assignment]


class ItemProblem(Exception):
    """One batch item cannot be applied; becomes that item's error result."""

    def __init__(
        self, status: int, title: str, detail: str, loc: list[str | int] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = ItemError(
            title=title,
            detail=detail,
            errors=[{"loc": loc, "msg": detail, "type": "value_error"}] if loc else None,
        )

    def as_error(self) -> AppError:
        """The same problem for a single-record call, where it answers the request."""
        if self.status == 403:
            return Forbidden(self.error.detail)
        errors = [{**err, "loc": ["body", *err["loc"]]} for err in (self.error.errors or [])]
        return Unprocessable(self.error.detail, errors=errors or None)


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def fingerprint(
    categories: Iterable[str],
    purposes: Iterable[str],
    controller_id: uuid.UUID,
    system: str,
    region: str | None,
) -> str:
    canonical = orjson.dumps(
        [sorted(set(categories)), sorted(set(purposes)), str(controller_id), system, region]
    )
    return hashlib.sha256(canonical).hexdigest()


@dataclass
class _Item:
    index: int
    body: RecordIn
    digests: list[BlindIndex]
    fingerprint: str
    record_id: uuid.UUID | None = None
    existing: bool = False
    restricted: bool = False
    profile_id: uuid.UUID | None = None
    decision: policy.Decision | None = None


@dataclass
class Registered:
    """The outcome of one item: created/updated with its record, or an error."""

    index: int
    status: str
    record_id: uuid.UUID | None = None
    problem: ItemProblem | None = None
    item: _Item | None = None
    at: datetime | None = None

    def record(self) -> RecordOut:
        """The full record; built only when asked (a batch answers ids only)."""
        assert self.item is not None and self.at is not None
        return _out(self.item, self.at)

    def result(self) -> BatchResult:
        return BatchResult(
            index=self.index,
            status=self.status,  # type: ignore[arg-type]
            id=self.record_id,
            error=self.problem.error if self.problem else None,
        )


def _validation_problem(exc: ValidationError) -> ItemProblem:
    problem = ItemProblem(422, "Invalid record", "The record has invalid fields; see errors")
    # Field paths and messages only: pydantic's input echo could carry identity values.
    problem.error.errors = [
        {"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]} for err in exc.errors()
    ]
    return problem


async def _existing_keys(session: AsyncSession, column: Any, wanted: set[Any]) -> set[Any]:
    if not wanted:
        return set()
    return set((await session.scalars(select(column).where(column.in_(wanted)))).all())


async def _check_references(session: AsyncSession, items: list[_Item]) -> dict[int, ItemProblem]:
    systems = await _existing_keys(session, System.key, {i.body.system for i in items})
    controllers = await _existing_keys(
        session, Controller.id, {i.body.controller_id for i in items}
    )
    categories = await _existing_keys(
        session, DataCategory.key, {c for i in items for c in i.body.categories}
    )
    purposes = await _existing_keys(
        session, Purpose.key, {p for i in items for p in i.body.purposes}
    )
    problems: dict[int, ItemProblem] = {}
    for item in items:
        body = item.body
        missing: tuple[str, list[str | int], str] | None = None
        if body.system not in systems:
            missing = ("system", ["system"], f"No system with key {body.system!r}")
        elif body.controller_id not in controllers:
            missing = ("controller", ["controller_id"], "No controller with this id")
        else:
            for position, key in enumerate(body.categories):
                if key not in categories:
                    missing = ("category", ["categories", position], f"No category {key!r}")
                    break
            for position, key in enumerate(body.purposes):
                if missing is None and key not in purposes:
                    missing = ("purpose", ["purposes", position], f"No purpose {key!r}")
        if missing is not None:
            problems[item.index] = ItemProblem(422, "Unknown reference", missing[2], missing[1])
    return problems


async def _resolve_profiles(
    session: AsyncSession, items: list[_Item], rules: engine.RuleBook
) -> dict[str, Any]:
    """Profile rows by fingerprint, creating the missing ones (concurrent creators agree)
    with the retention rules that apply to them, ranked."""
    wanted = {item.fingerprint: item.body for item in items}
    found = {
        row.fingerprint: row
        for row in (
            await session.execute(
                select(RecordProfile).where(RecordProfile.fingerprint.in_(wanted))
            )
        ).scalars()
    }
    # Sorted: concurrent batches take the unique-index locks of new profiles in one order.
    missing = sorted(fp for fp in wanted if fp not in found)
    if missing:
        insert = _insert(session)
        rows = []
        for fp in missing:
            body = wanted[fp]
            categories, purposes = sorted(set(body.categories)), sorted(set(body.purposes))
            row = {
                "id": new_id(),
                "fingerprint": fp,
                "controller_id": body.controller_id,
                "system": body.system,
                "region": body.region,
                "categories": categories,
                "purposes": purposes,
            }
            facts = engine.ProfileFacts(
                controller_id=body.controller_id,
                system=body.system,
                region=body.region,
                categories=tuple(categories),
                purposes=tuple(purposes),
            )
            ranked = rules.ranked(facts)
            rows.append({**row, "ranked_rules": engine.encode_ranked(ranked)})
        await session.execute(
            insert(RecordProfile).on_conflict_do_nothing(index_elements=["fingerprint"]), rows
        )
        created = {
            row.fingerprint: row
            for row in (
                await session.execute(
                    select(RecordProfile).where(RecordProfile.fingerprint.in_(missing))
                )
            ).scalars()
        }
        in_order = [created[fp] for fp in missing if fp in created]
        category_rows = [
            {"profile_id": p.id, "category": c} for p in in_order for c in p.categories
        ]
        purpose_rows = [{"profile_id": p.id, "purpose": c} for p in in_order for c in p.purposes]
        if category_rows:
            await session.execute(
                insert(RecordProfileCategory).on_conflict_do_nothing(), category_rows
            )
        if purpose_rows:
            await session.execute(
                insert(RecordProfilePurpose).on_conflict_do_nothing(), purpose_rows
            )
        found.update(created)
    return found


def _rules_out(outcomes: Sequence[policy.RuleOutcome]) -> list[dict[str, Any]]:
    return [
        {
            "id": uuid.UUID(o.rule_id),
            "kind": o.kind,
            "ends_at": o.ends_at,
            "decisive": o.decisive,
            "outranked": o.outranked,
        }
        for o in outcomes
    ]


def decision_out(record_id: uuid.UUID, decision: policy.Decision) -> RetentionDecision:
    return RetentionDecision(
        record_id=record_id,
        status=decision.status,
        keep_until=decision.keep_until,
        keep_indefinitely=decision.keep_indefinitely,
        delete_by=decision.delete_by,
        action=decision.action,
        holds=[uuid.UUID(h) for h in decision.holds],
        rules=_rules_out(decision.rules),
    )


def stored_decision(
    record: Any, ranked_rules: str, hold_ids: list[str], now: datetime
) -> RetentionDecision:
    """The decision kept on a record row, explained by its profile's ranked rules applied to
    the record's dates. The dates come from the row: they are what the due sweep reads."""
    explained = engine.explain(ranked_rules, record, hold_ids, now)
    return RetentionDecision(
        record_id=record.id,
        status=policy.status_at(
            record.held, record.keep_until, record.keep_indefinitely, record.delete_by, now
        ),
        keep_until=record.keep_until,
        keep_indefinitely=record.keep_indefinitely,
        delete_by=record.delete_by,
        action=record.action,
        holds=[uuid.UUID(h) for h in hold_ids],
        rules=_rules_out(explained.rules),
    )


async def register(
    session: AsyncSession,
    principal: Principal,
    indexer: BlindIndexer,
    raw_items: Sequence[dict[str, Any] | RecordIn],
) -> list[Registered]:
    """Validate and upsert records on (system, record_ref); each item succeeds or fails alone."""
    now = utcnow()
    outcomes: dict[int, Registered] = {}
    items: list[_Item] = []
    seen: set[tuple[str, str]] = set()
    for index, raw in enumerate(raw_items):
        try:
            body = raw if isinstance(raw, RecordIn) else RecordIn.model_validate(raw)
            if principal.role == "system" and body.system != principal.system_key:
                raise ItemProblem(
                    403,
                    "Forbidden",
                    "A system key registers records of its own system only",
                    ["system"],
                )
            if (body.system, body.record_ref) in seen:
                raise ItemProblem(
                    422,
                    "Duplicate record",
                    "This record_ref appears twice in the batch",
                    ["record_ref"],
                )
            digests = []
            for position, identity in enumerate(body.identities):
                try:
                    digests.extend(indexer.all_of(identity, controller_id=body.controller_id))
                except InvalidIdentity as exc:
                    raise ItemProblem(
                        422, "Invalid identity", str(exc), ["identities", position, "value"]
                    ) from None
        except ValidationError as exc:
            outcomes[index] = Registered(index, "error", problem=_validation_problem(exc))
            continue
        except ItemProblem as item_problem:
            outcomes[index] = Registered(index, "error", problem=item_problem)
            continue
        seen.add((body.system, body.record_ref))
        items.append(
            _Item(
                index=index,
                body=body,
                # The first of equal hashes stays: an identity's current one before companions.
                digests=list(dict(reversed([(d.digest, d) for d in digests])).values()),
                fingerprint=fingerprint(
                    body.categories, body.purposes, body.controller_id, body.system, body.region
                ),
            )
        )

    problems = await _check_references(session, items)
    for index, problem in problems.items():
        outcomes[index] = Registered(index, "error", problem=problem)
    items = [item for item in items if item.index not in problems]
    if items:
        await _apply(session, items, now)
        for item in items:
            outcomes[item.index] = Registered(
                item.index,
                "updated" if item.existing else "created",
                record_id=item.record_id,
                item=item,
                at=now,
            )
    return [outcomes[index] for index in sorted(outcomes)]


async def _existing(session: AsyncSession, refs: list[tuple[str, str]]) -> dict[Any, Any]:
    """Rows of the records that already exist among (system, record_ref) pairs."""
    by_system: dict[str, list[str]] = {}
    for system, ref in refs:
        by_system.setdefault(system, []).append(ref)
    postgres = session.get_bind().dialect.name == "postgresql"
    found: dict[Any, Any] = {}
    for system, system_refs in by_system.items():
        columns = select(Record.id, Record.system, Record.record_ref, Record.state)
        if postgres:
            # A join on unnest(array) keeps its index plan when PostgreSQL switches the
            # prepared statement to a generic plan; `= ANY(array)` fell to a sequential scan
            # there (2 ms became 250 ms per 1000-record batch as the table grew).
            array = bindparam(None, system_refs, type_=ARRAY(String()))
            wanted = func.unnest(array).table_valued("ref").render_derived()
            statement = columns.join(wanted, Record.record_ref == wanted.c.ref).where(
                Record.system == system
            )
        else:
            statement = columns.where(Record.system == system, Record.record_ref.in_(system_refs))
        for row in await session.execute(statement):
            found[(row.system, row.record_ref)] = row
    return found


async def _apply(session: AsyncSession, items: list[_Item], now: datetime) -> None:
    # Every row this writes (records, identities) is written in (system, record_ref) order:
    # concurrent batches over the same refs then lock them in the same order and queue
    # instead of deadlocking (a residual deadlock is retried, see app/core/resilience.py).
    items = sorted(items, key=lambda i: (i.body.system, i.body.record_ref))
    rules = await engine.load_rulebook(session)
    profiles = await _resolve_profiles(session, items, rules)
    existing = await _existing(session, [(i.body.system, i.body.record_ref) for i in items])
    for item in items:
        row = existing.get((item.body.system, item.body.record_ref))
        item.profile_id = profiles[item.fingerprint].id
        if row is not None:
            item.record_id, item.existing = row.id, True
            item.restricted = row.state == "restricted"
        else:
            item.record_id = new_id()

    holds = await engine.load_holdbook(session)
    for item in items:
        _decide(item, profiles[item.fingerprint], rules, holds, now)

    new_items = [item for item in items if not item.existing]
    if new_items:
        inserted = set(
            (
                await session.execute(
                    _insert(session)(Record)
                    .on_conflict_do_nothing(index_elements=["system", "record_ref"])
                    .returning(Record.id),
                    [_row(item, now, created=True) for item in new_items],
                )
            ).scalars()
        )
        raced = [item for item in new_items if item.record_id not in inserted]
        if raced:
            # Another transaction registered the same refs first: update those instead.
            winners = await _existing(session, [(i.body.system, i.body.record_ref) for i in raced])
            for item in raced:
                item.record_id = winners[(item.body.system, item.body.record_ref)].id
                item.existing = True
                _decide(item, profiles[item.fingerprint], rules, holds, now)

    updates = [item for item in items if item.existing]
    if updates:
        await session.execute(
            update(records_table).where(records_table.c.id == bindparam("b_id")),
            [{"b_id": item.record_id, **_row(item, now, created=False)} for item in updates],
        )
        await session.execute(
            delete(RecordIdentity).where(
                any_of(session, RecordIdentity.record_id, [item.record_id for item in updates])
            )
        )
    identity_rows = [
        {
            "record_id": item.record_id,
            "identity_type": str(d.type),
            "digest": d.digest,
            "key_id": d.key_id,
        }
        for item in items
        for d in item.digests
    ]
    if identity_rows:
        await session.execute(identities_table.insert(), identity_rows)


def _decide(
    item: _Item,
    profile: Any,
    rules: engine.RuleBook,
    holds: engine.HoldBook,
    now: datetime,
) -> None:
    assert item.record_id is not None
    dates = engine.RecordDates(
        id=item.record_id,
        collected_at=item.body.collected_at,
        last_activity_at=item.body.last_activity_at,
        events=dict(item.body.events),
        restricted=item.restricted,
        digests=frozenset(d.digest for d in item.digests),
    )
    item.decision = engine.decide(rules, holds, engine.profile_facts(profile), dates, now)


def _row(item: _Item, now: datetime, *, created: bool) -> dict[str, Any]:
    assert item.decision is not None
    body = item.body
    row: dict[str, Any] = {
        "system": body.system,
        "record_ref": body.record_ref,
        "controller_id": body.controller_id,
        "profile_id": item.profile_id,
        "collected_at": body.collected_at,
        "last_activity_at": body.last_activity_at,
        "events": {name: engine.event_text(ts) for name, ts in body.events.items()},
        "state": "restricted" if item.restricted else "active",
        "updated_at": now,
        "erased_at": None,
        **engine.stored_columns(item.decision),
    }
    if created:
        row.update(id=item.record_id, created_at=now)
    return row


def _out(item: _Item, now: datetime) -> RecordOut:
    assert item.record_id is not None and item.decision is not None
    body = item.body
    return RecordOut(
        id=item.record_id,
        system=body.system,
        record_ref=body.record_ref,
        controller_id=body.controller_id,
        categories=sorted(set(body.categories)),
        purposes=sorted(set(body.purposes)),
        region=body.region,
        identities=[
            IdentityDigest(type=d.type, digest=d.digest) for d in item.digests if not d.companion
        ],
        collected_at=body.collected_at,
        last_activity_at=body.last_activity_at,
        events=dict(body.events),
        state="restricted" if item.restricted else "active",
        created_at=now,
        updated_at=now,
        erased_at=None,
        retention=decision_out(item.record_id, item.decision),
    )


# Reading -------------------------------------------------------------------------------


def record_rows(visibility: Visibility) -> ColumnElement[bool]:
    """Records a key sees: a system key its system's, a controller key its controller's."""
    return visibility.where(
        system=lambda key: Record.system == key,
        controller=lambda controller_id: Record.controller_id == controller_id,
    )


def visible(principal: Principal) -> Select[Record, RecordProfile]:
    return (
        select(Record, RecordProfile)
        .join(RecordProfile, RecordProfile.id == Record.profile_id)
        .where(record_rows(principal.visibility))
    )


async def identities_of(
    session: AsyncSession, record_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[IdentityDigest]]:
    found: dict[uuid.UUID, list[IdentityDigest]] = {rid: [] for rid in record_ids}
    if record_ids:
        rows = await session.execute(
            select(
                RecordIdentity.record_id,
                RecordIdentity.identity_type,
                RecordIdentity.digest,
                RecordIdentity.key_id,
            ).where(RecordIdentity.record_id.in_(record_ids))
        )
        for record_id, identity_type, digest, label in rows:
            if not parse_label(label)[2]:
                found[record_id].append(IdentityDigest(type=identity_type, digest=digest))
    return found


def record_out(
    record: Record,
    profile: RecordProfile,
    identities: list[IdentityDigest],
    hold_ids: list[str],
    now: datetime,
) -> RecordOut:
    return RecordOut(
        id=record.id,
        system=record.system,
        record_ref=record.record_ref,
        controller_id=record.controller_id,
        categories=list(profile.categories),
        purposes=list(profile.purposes),
        region=profile.region,
        identities=identities,
        collected_at=record.collected_at,
        last_activity_at=record.last_activity_at,
        events=engine.parse_events(record.events),
        state=record.state,  # type: ignore[arg-type]
        created_at=record.created_at,
        updated_at=record.updated_at,
        erased_at=record.erased_at,
        retention=stored_decision(record, profile.ranked_rules, hold_ids, now),
    )


async def records_out(session: AsyncSession, rows: Sequence[Any]) -> list[RecordOut]:
    now = utcnow()
    identities = await identities_of(session, [row[0].id for row in rows])
    holds = await engine.holds_of(
        session, [(rec.id, engine.profile_facts(prof)) for rec, prof in rows if rec.held]
    )
    return [
        record_out(rec, prof, identities[rec.id], holds.get(rec.id, []), now) for rec, prof in rows
    ]


async def get_visible(
    session: AsyncSession, principal: Principal, record_id: uuid.UUID
) -> tuple[Record, RecordProfile]:
    row = (await session.execute(visible(principal).where(Record.id == record_id))).first()
    if row is None:
        raise NotFound("No record with this id")
    return row[0], row[1]


def require_writer(principal: Principal, system: str) -> None:
    if principal.role == "system" and principal.system_key != system:
        raise Forbidden("A system key writes records of its own system only")


async def page_rows(
    session: AsyncSession, statement: Select[Record, RecordProfile], limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """Keyset page of (record, profile) rows by record id."""
    if cursor is not None:
        (after,) = decode_cursor(cursor, cursor_uuid)
        statement = statement.where(Record.id > after)
    rows = list((await session.execute(statement.order_by(Record.id).limit(limit + 1))).all())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor([rows[-1][0].id])


async def _digests_of_record(session: AsyncSession, record_id: uuid.UUID) -> frozenset[str]:
    rows = await session.scalars(
        select(RecordIdentity.digest).where(RecordIdentity.record_id == record_id)
    )
    return frozenset(rows.all())


async def update_record(
    session: AsyncSession, record: Record, profile: RecordProfile, body: RecordPatch
) -> tuple[Record, RecordProfile, list[str]]:
    """Apply a PATCH and recompute the record's retention decision."""
    if record.state == "erased":
        raise Conflict("An erased record cannot change")
    now = utcnow()
    rules = await engine.load_rulebook(session)
    changes = body.model_dump(exclude_unset=True)
    if "last_activity_at" in changes:
        record.last_activity_at = body.last_activity_at
    if body.events:
        record.events = {
            **(record.events or {}),
            **{name: engine.event_text(ts) for name, ts in body.events.items()},
        }
    if body.categories is not None or body.purposes is not None:
        categories = body.categories if body.categories is not None else profile.categories
        purposes = body.purposes if body.purposes is not None else profile.purposes
        probe = RecordIn(
            system=record.system,
            record_ref=record.record_ref,
            controller_id=record.controller_id,
            categories=categories,
            purposes=purposes,
            collected_at=record.collected_at,
            region=profile.region,
        )
        item = _Item(
            index=0,
            body=probe,
            digests=[],
            fingerprint=fingerprint(
                categories, purposes, record.controller_id, record.system, profile.region
            ),
        )
        problems = await _check_references(session, [item])
        if problems:
            problem = problems[0]
            loc = problem.error.errors[0]["loc"] if problem.error.errors else None
            raise Unprocessable(problem.error.detail, loc=["body", *loc] if loc else None)
        profile = (await _resolve_profiles(session, [item], rules))[item.fingerprint]
        record.profile_id = profile.id
    holds = await engine.load_holdbook(session)
    dates = engine.RecordDates(
        id=record.id,
        collected_at=record.collected_at,
        last_activity_at=record.last_activity_at,
        events=engine.parse_events(record.events),
        restricted=record.state == "restricted",
        digests=await _digests_of_record(session, record.id),
    )
    decision = engine.decide(rules, holds, engine.profile_facts(profile), dates, now)
    for column, value in engine.stored_columns(decision).items():
        setattr(record, column, value)
    record.updated_at = now
    await session.flush()
    return record, profile, sorted(changes)


async def mark_erased(
    session: AsyncSession, system: str, record_refs: list[str]
) -> list[uuid.UUID]:
    """Systems report deletions: records become tombstones that keep ids and dates only.
    Holds win: when any named record is held, nothing is tombstoned (RecordsHeld)."""
    rows = (
        await session.execute(
            select(Record.id, Record.record_ref).where(
                Record.system == system,
                Record.record_ref.in_(set(record_refs)),
                Record.state != "erased",
            )
        )
    ).all()
    ids = [row.id for row in rows]
    held = await grounds.held_records(session, ids, lock=True)
    if held:
        out = {g["record_ref"]: g for g in await grounds.grounds_out(session, held)}
        raise grounds.RecordsHeld(
            f"{len(held)} of these records are held (legal hold or restriction): "
            "none was marked erased",
            [{"index": i, **out[ref]} for i, ref in enumerate(record_refs) if ref in out],
            held,
        )
    return await tombstone(session, ids)


async def tombstone(session: AsyncSession, ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Erased means gone: keep the record's id and dates, drop its identities and decision.
    A held record is never tombstoned, whatever the caller checked. Returns the ids erased."""
    if not ids:
        return []
    now = utcnow()
    erased = await session.execute(
        update(Record)
        .where(Record.id.in_(ids), Record.state != "erased", Record.held.is_(False))
        .values(
            state="erased",
            erased_at=now,
            updated_at=now,
            held=False,
            keep_until=None,
            keep_indefinitely=False,
            delete_by=None,
        )
        .returning(Record.id)
        .execution_options(synchronize_session=False)
    )
    done = list(erased.scalars())
    if done:
        await session.execute(delete(RecordIdentity).where(RecordIdentity.record_id.in_(done)))
    return done


_DECISION_COLUMNS = select(
    Record.id,
    Record.state,
    Record.collected_at,
    Record.last_activity_at,
    Record.events,
    Record.held,
    Record.keep_until,
    Record.keep_indefinitely,
    Record.delete_by,
    Record.action,
    RecordProfile.ranked_rules,
).join(RecordProfile, RecordProfile.id == Record.profile_id)
# Built once per kind of visibility: constructing a select() per request costs more than
# running it. A key that sees nothing has no statement: it finds no record.
_DECISION_BY_KIND = {
    "everything": _DECISION_COLUMNS.where(Record.id == bindparam("record_id")),
    "system": _DECISION_COLUMNS.where(
        Record.id == bindparam("record_id"), Record.system == bindparam("system_key")
    ),
    "controller": _DECISION_COLUMNS.where(
        Record.id == bindparam("record_id"), Record.controller_id == bindparam("controller_id")
    ),
}


async def decision_of(
    session: AsyncSession, principal: Principal, record_id: uuid.UUID
) -> RetentionDecision:
    """The hot path of a retention check: one indexed Core read of the decision columns and
    the profile's ranked rules (a held record also reads which holds)."""
    visibility = principal.visibility
    statement = _DECISION_BY_KIND.get(visibility.kind)
    if statement is None:
        raise NotFound("No record with this id")
    params: dict[str, Any] = {"record_id": record_id}
    if visibility.kind == "system":
        params["system_key"] = visibility.system_key
    elif visibility.kind == "controller":
        params["controller_id"] = visibility.controller_id
    row = (await session.execute(statement, params)).first()
    if row is None:
        raise NotFound("No record with this id")
    hold_ids: list[str] = []
    if row.held:
        profile = (
            await session.execute(select(RecordProfile).join(Record).where(Record.id == row.id))
        ).scalar_one()
        holds = await engine.holds_of(session, [(row.id, engine.profile_facts(profile))])
        hold_ids = holds[row.id]
    return stored_decision(row, row.ranked_rules, hold_ids, utcnow())
