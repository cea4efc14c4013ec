"""Registering records: set-based writes (a few statements per batch, never one per record),
with each record's retention decision computed and stored in the same transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import OPERATOR
from app.audit.service import record as audit
from app.auth.service import Principal
from app.core.db import join_any_of, utcnow
from app.core.errors import AppError, Forbidden, Unprocessable
from app.core.identity import BlindIndex, BlindIndexer, InvalidIdentity
from app.core.ids import new_id
from app.records import writes
from app.records.models import Record
from app.records.profiles import fingerprint, profile_facts, resolve_profiles
from app.records.reappearance import Candidate, flag_reappeared
from app.records.references import known_references
from app.records.schemas import IdentityDigest, ItemError, RecordIn, RecordOut
from app.retention import engine, policy
from app.retention.answer import decision_out, name_rules


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


@dataclass
class _Item:
    index: int
    body: RecordIn
    digests: list[BlindIndex]
    fingerprint: str
    record_id: uuid.UUID | None = None
    existing: bool = False
    restricted: bool = False
    revived: bool = False  # the record was a tombstone (erased) before this write
    profile_id: uuid.UUID | None = None
    decision: policy.Decision | None = None
    # Whether the decision keeps the rules' outcomes (why): only an answer showing the record
    # needs them, and a batch answers ids.
    reasons: bool = True

    @property
    def facts(self) -> engine.ProfileFacts:
        body = self.body
        return profile_facts(
            body.categories, body.purposes, body.controller_id, body.system, body.region
        )


@dataclass
class Registered:
    """The outcome of one item: created/updated with its record, or an error."""

    index: int
    status: str
    record_id: uuid.UUID | None = None
    problem: ItemProblem | None = None
    item: _Item | None = None
    at: datetime | None = None
    out: RecordOut | None = None

    def record(self) -> RecordOut:
        """The full record; built only when asked (a batch answers ids only)."""
        if self.out is None:
            assert self.item is not None and self.at is not None and self.item.reasons
            self.out = _out(self.item, self.at)
        return self.out


def batch_json(outcomes: Sequence[Registered]) -> bytes:
    """The batch's answer (BatchOut) as JSON: the same document as the models give, written
    from plain values."""
    return orjson.dumps(
        {
            "results": [
                {
                    "index": o.index,
                    "status": o.status,
                    # Text: a driver may hand back its own UUID type.
                    "id": None if o.record_id is None else str(o.record_id),
                    "error": o.problem.error.model_dump(mode="json") if o.problem else None,
                }
                for o in outcomes
            ]
        }
    )


def _validation_problem(exc: ValidationError) -> ItemProblem:
    problem = ItemProblem(422, "Invalid record", "The record has invalid fields; see errors")
    # Field paths and messages only: pydantic's input echo could carry identity values.
    problem.error.errors = [
        {"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]} for err in exc.errors()
    ]
    return problem


async def _check_references(session: AsyncSession, items: list[_Item]) -> dict[int, ItemProblem]:
    known = await known_references(
        session,
        {i.body.system for i in items},
        {i.body.controller_id for i in items},
        {c for i in items for c in i.body.categories},
        {p for i in items for p in i.body.purposes},
    )
    problems: dict[int, ItemProblem] = {}
    for item in items:
        body = item.body
        missing = known.first_missing(
            body.system, body.controller_id, body.categories, body.purposes
        )
        if missing is not None:
            problems[item.index] = ItemProblem(
                422, "Unknown reference", missing.detail, missing.loc
            )
    return problems


async def register(
    session: AsyncSession,
    principal: Principal,
    indexer: BlindIndexer,
    raw_items: Sequence[dict[str, Any] | RecordIn],
    *,
    reasons: bool = True,
) -> list[Registered]:
    """Validate and upsert records on (system, record_ref); each item succeeds or fails alone.
    Without `reasons`, the outcomes' decisions carry their dates only (`Registered.record`
    is then not available)."""
    now = utcnow()
    outcomes: dict[int, Registered] = {}
    items: list[_Item] = []
    seen: set[tuple[str, str]] = set()
    # Normalising and hashing an identity (a phone above all) is most of an item's CPU before
    # the database; a subject's identities recur across the records of a batch. Kept for
    # this batch only: no identity value outlives the request in memory.
    hashed: dict[tuple[str, str, str, uuid.UUID], list[BlindIndex]] = {}
    # Records of a batch share a few profiles: each fingerprint computed once.
    fingerprints: dict[tuple[Any, ...], str] = {}
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
                # The format too: a value sent raw and the same text sent as a sha256 are
                # different identities (one may be invalid where the other is not).
                key = (identity.type, identity.format, identity.value, body.controller_id)
                try:
                    found = hashed.get(key)
                    if found is None:
                        found = hashed[key] = indexer.all_of(
                            identity, controller_id=body.controller_id
                        )
                    digests.extend(found)
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
        shape = (
            tuple(body.categories),
            tuple(body.purposes),
            body.controller_id,
            body.system,
            body.region,
        )
        found_fingerprint = fingerprints.get(shape)
        if found_fingerprint is None:
            found_fingerprint = fingerprints[shape] = fingerprint(*shape)
        items.append(
            _Item(
                index=index,
                body=body,
                # The first of equal hashes stays: an identity's current one before companions.
                digests=list(dict(reversed([(d.digest, d) for d in digests])).values()),
                fingerprint=found_fingerprint,
                reasons=reasons,
            )
        )

    problems = await _check_references(session, items)
    for index, problem in problems.items():
        outcomes[index] = Registered(index, "error", problem=problem)
    items = [item for item in items if item.index not in problems]
    if items:
        await _apply(session, items, now)
        await flag_reappeared(
            session,
            principal,
            (
                Candidate(
                    item.record_id,
                    item.body.controller_id,
                    item.body.system,
                    [d.digest for d in item.digests],
                )
                for item in items
                if item.record_id is not None and (item.revived or not item.existing)
            ),
            now,
        )
        for item in items:
            outcomes[item.index] = Registered(
                item.index,
                "updated" if item.existing else "created",
                record_id=item.record_id,
                item=item,
                at=now,
            )
    return [outcomes[index] for index in sorted(outcomes)]


async def register_one(
    session: AsyncSession, principal: Principal, indexer: BlindIndexer, body: RecordIn
) -> Registered:
    """One record by the API: its problem answers the call; audited as created or updated."""
    (outcome,) = await register(session, principal, indexer, [body])
    if outcome.problem is not None:
        raise outcome.problem.as_error()
    assert outcome.record_id is not None
    audit(
        session,
        principal,
        f"record.{outcome.status}",
        "record",
        outcome.record_id,
        {"system": body.system},
    )
    await name_rules(session, [outcome.record().retention])
    return outcome


async def register_batch(
    session: AsyncSession,
    principal: Principal,
    indexer: BlindIndexer,
    raw_items: Sequence[dict[str, Any] | RecordIn],
    *,
    import_file: str | None = None,
) -> list[Registered]:
    """A batch, each item alone, audited once when any item was written: as the caller's
    `records.registered`, or, for a command-line import (`import_file`, the file's name), as
    the operator's `records.imported`."""
    # A batch answers ids and statuses: its decisions keep their dates, not their reasons.
    outcomes = await register(session, principal, indexer, raw_items, reasons=False)
    written = [o for o in outcomes if o.record_id is not None]
    if not written:
        return outcomes
    if import_file is not None:
        audit(
            session,
            OPERATOR,
            "records.imported",
            "record_batch",
            str(written[0].record_id),
            {"file": import_file, "written": len(written), "errors": len(outcomes) - len(written)},
        )
    else:
        audit(
            session,
            principal,
            "records.registered",
            "record_batch",
            str(written[0].record_id),
            {
                "created": [str(o.record_id) for o in written if o.status == "created"],
                "updated": [str(o.record_id) for o in written if o.status == "updated"],
                "errors": len(outcomes) - len(written),
            },
        )
    return outcomes


async def _existing(session: AsyncSession, refs: list[tuple[str, str]]) -> dict[Any, Any]:
    """Rows of the records that already exist among (system, record_ref) pairs."""
    by_system: dict[str, list[str]] = {}
    for system, ref in refs:
        by_system.setdefault(system, []).append(ref)
    found: dict[Any, Any] = {}
    for system, system_refs in by_system.items():
        columns = select(Record.id, Record.system, Record.record_ref, Record.state)
        statement = join_any_of(session, columns, Record.record_ref, system_refs).where(
            Record.system == system
        )
        for row in await session.execute(statement):
            found[(row.system, row.record_ref)] = row
    return found


async def _apply(session: AsyncSession, items: list[_Item], now: datetime) -> None:
    # Every row this writes (records, identities) is written in (system, record_ref) order:
    # concurrent batches over the same refs then lock them in the same order and queue
    # instead of deadlocking (a residual deadlock is retried, see app/core/resilience.py).
    items = sorted(items, key=lambda i: (i.body.system, i.body.record_ref))
    rules = await engine.load_rulebook(session)
    wanted: dict[str, engine.ProfileFacts] = {}
    for item in items:
        if item.fingerprint not in wanted:
            wanted[item.fingerprint] = item.facts
    profiles = await resolve_profiles(session, wanted, rules)
    existing = await _existing(session, [(i.body.system, i.body.record_ref) for i in items])
    for item in items:
        row = existing.get((item.body.system, item.body.record_ref))
        item.profile_id = profiles[item.fingerprint].id
        if row is not None:
            item.record_id, item.existing = row.id, True
            item.restricted = row.state == "restricted"
            item.revived = row.state == "erased"
        else:
            item.record_id = new_id()

    holds = await engine.load_holdbook(session)
    facts = {key: engine.profile_facts(profile) for key, profile in profiles.items()}
    for item in items:
        _decide(item, facts[item.fingerprint], rules, holds, now)

    new_items = [item for item in items if not item.existing]
    if new_items:
        inserted = await writes.insert_records(
            session, [_row(item, now, created=True) for item in new_items]
        )
        raced = [item for item in new_items if item.record_id not in inserted]
        if raced:
            # Another transaction registered the same refs first: update those instead.
            winners = await _existing(session, [(i.body.system, i.body.record_ref) for i in raced])
            for item in raced:
                item.record_id = winners[(item.body.system, item.body.record_ref)].id
                item.existing = True
                _decide(item, facts[item.fingerprint], rules, holds, now)

    updates = [item for item in items if item.existing]
    if updates:
        await writes.update_records(session, [_row(item, now, created=False) for item in updates])
    await writes.insert_identities(
        session,
        [(item.record_id, str(d.type), d.digest, d.key_id) for item in items for d in item.digests],
    )


def _decide(
    item: _Item,
    facts: engine.ProfileFacts,
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
    item.decision = engine.decide(rules, holds, facts, dates, now, reasons=item.reasons)


def _row(item: _Item, now: datetime, *, created: bool) -> dict[str, Any]:
    assert item.decision is not None
    body = item.body
    row: dict[str, Any] = {
        "id": item.record_id,
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
        row["created_at"] = now
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
