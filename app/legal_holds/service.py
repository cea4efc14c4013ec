"""Legal holds: nothing in a hold's scope is deleted until the hold is released.

Identities in a scope are kept only as blind indexes, the same keyed hashes records carry, so
a hold matches a subject's records without this database knowing who the subject is."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record
from app.auth.service import Principal
from app.controllers.models import Controller
from app.core.db import utcnow
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.identity import BlindIndexer, InvalidIdentity, parse_label
from app.core.ids import new_id
from app.data_categories.models import DataCategory
from app.legal_holds.models import LegalHold, LegalHoldIdentity, LegalHoldRecord
from app.legal_holds.schemas import HeldIdentity, LegalHoldCreate, LegalHoldOut, LegalHoldScope
from app.records.models import Record
from app.retention.recompute import Scope, recompute
from app.systems.models import System
from app.tasks.holds import sync_suspensions


@dataclass(frozen=True, slots=True)
class HoldScope:
    """What a hold reaches: the records to recompute when a hold with it is placed or released."""

    hold_id: uuid.UUID
    controller_id: uuid.UUID | None
    system: str | None
    category: str | None
    identity_digests: tuple[str, ...]
    record_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True, slots=True)
class HoldView:
    hold: LegalHold
    identities: list[LegalHoldIdentity]
    record_ids: list[uuid.UUID]

    def scope(self) -> HoldScope:
        return HoldScope(
            self.hold.id,
            self.hold.controller_id,
            self.hold.system,
            self.hold.category,
            tuple(i.digest for i in self.identities),
            tuple(self.record_ids),
        )

    def shown_identities(self) -> list[LegalHoldIdentity]:
        # Legacy companions of an identity's current hash match records; they are not shown.
        return [i for i in self.identities if not parse_label(i.key_id)[2]]

    def audit(self) -> dict[str, Any]:
        # Ids and counts: enough to find the hold's reach, nothing about who is held.
        return {
            "controller_id": str(self.hold.controller_id) if self.hold.controller_id else None,
            "system": self.hold.system,
            "category": self.hold.category,
            "identity_count": len(self.shown_identities()),
            "record_count": len(self.record_ids),
        }

    def out(self) -> LegalHoldOut:
        hold = self.hold
        return LegalHoldOut(
            id=hold.id,
            reason=hold.reason,
            active=hold.released_at is None,
            placed_at=hold.placed_at,
            placed_by_key_id=hold.placed_by_key_id,
            released_at=hold.released_at,
            released_by_key_id=hold.released_by_key_id,
            release_note=hold.release_note,
            scope=LegalHoldScope(
                controller_id=hold.controller_id,
                system=hold.system,
                category=hold.category,
                identities=[
                    HeldIdentity(type=i.identity_type, digest=i.digest)  # type: ignore[arg-type]
                    for i in self.shown_identities()
                ],
                record_ids=self.record_ids,
            ),
        )


async def on_holds_changed(
    session: AsyncSession, actor: Principal, hold_scopes: Iterable[HoldScope]
) -> None:
    # In the same transaction: a placed hold protects its records from the moment it commits.
    await recompute(
        session,
        [
            Scope(
                controller_id=s.controller_id,
                system=s.system,
                category=s.category,
                digests=frozenset(s.identity_digests),
                record_ids=frozenset(s.record_ids),
            )
            for s in hold_scopes
        ],
    )
    # Erase work already handed out or waiting follows the records' new `held`: suspended
    # under a hold, claimable again once nothing holds its records.
    await sync_suspensions(session, actor)


def listed(active: bool | None) -> Select[LegalHold]:
    statement = select(LegalHold)
    if active is True:
        statement = statement.where(LegalHold.released_at.is_(None))
    elif active is False:
        statement = statement.where(LegalHold.released_at.is_not(None))
    return statement


async def views(session: AsyncSession, holds: Sequence[LegalHold]) -> list[HoldView]:
    """The holds with their identities and record ids: two queries for any number of holds."""
    ids = [hold.id for hold in holds]
    identities: dict[uuid.UUID, list[LegalHoldIdentity]] = defaultdict(list)
    record_ids: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    if ids:
        for identity in await session.scalars(
            select(LegalHoldIdentity)
            .where(LegalHoldIdentity.hold_id.in_(ids))
            .order_by(LegalHoldIdentity.identity_type, LegalHoldIdentity.digest)
        ):
            identities[identity.hold_id].append(identity)
        for row in await session.execute(
            select(LegalHoldRecord.hold_id, LegalHoldRecord.record_id)
            .where(LegalHoldRecord.hold_id.in_(ids))
            .order_by(LegalHoldRecord.record_id)
        ):
            record_ids[row.hold_id].append(row.record_id)
    return [HoldView(hold, identities[hold.id], record_ids[hold.id]) for hold in holds]


async def get_hold(session: AsyncSession, hold_id: uuid.UUID) -> HoldView:
    hold = await session.get(LegalHold, hold_id)
    if hold is None:
        raise NotFound("No legal hold with this id")
    (view,) = await views(session, [hold])
    return view


async def _check_references(session: AsyncSession, body: LegalHoldCreate) -> None:
    if body.controller_id is not None and await session.get(Controller, body.controller_id) is None:
        raise Unprocessable("No controller with this id", loc=["body", "controller_id"])
    if body.system is not None and await session.get(System, body.system) is None:
        raise Unprocessable("No system with this key", loc=["body", "system"])
    if body.category is not None and await session.get(DataCategory, body.category) is None:
        raise Unprocessable("No data category with this key", loc=["body", "category"])
    if body.record_ids:
        # Record ids are ours, handed out at registration, so an unknown one is a mistake.
        wanted = set(body.record_ids)
        known = set((await session.scalars(select(Record.id).where(Record.id.in_(wanted)))).all())
        for index, record_id in enumerate(body.record_ids):
            if record_id not in known:
                raise Unprocessable("No record with this id", loc=["body", "record_ids", index])


def _blind_indexes(body: LegalHoldCreate, indexer: BlindIndexer) -> list[LegalHoldIdentity]:
    rows: dict[tuple[str, str], LegalHoldIdentity] = {}
    for index, identity in enumerate(body.identities):
        try:
            # Under every normalisation version in use, so the hold covers records whose
            # hashes were stored under an older one (and they, kept beside the current one,
            # keep it covering records registered later).
            blinds = indexer.all_of(identity, controller_id=body.controller_id)
        except InvalidIdentity as exc:
            # The message names the type and what is wrong, never the value.
            raise Unprocessable(str(exc), loc=["body", "identities", index]) from None
        # Spellings that normalise alike (case, spaces) are one identity.
        for blind in blinds:
            rows.setdefault(
                (blind.type, blind.digest),
                LegalHoldIdentity(
                    identity_type=blind.type, digest=blind.digest, key_id=blind.key_id
                ),
            )
    return list(rows.values())


async def place_hold(
    session: AsyncSession, principal: Principal, body: LegalHoldCreate, indexer: BlindIndexer
) -> HoldView:
    identities = _blind_indexes(body, indexer)
    await _check_references(session, body)
    hold = LegalHold(
        id=new_id(),
        reason=body.reason,
        controller_id=body.controller_id,
        system=body.system,
        category=body.category,
        placed_by_key_id=principal.key_id,
        placed_at=utcnow(),
    )
    session.add(hold)
    await session.flush()
    for identity in identities:
        identity.hold_id = hold.id
    record_ids = sorted(set(body.record_ids))
    session.add_all(identities)
    session.add_all(LegalHoldRecord(hold_id=hold.id, record_id=r) for r in record_ids)
    await session.flush()
    identities.sort(key=lambda i: (i.identity_type, i.digest))
    view = HoldView(hold, identities, record_ids)
    await on_holds_changed(session, principal, [view.scope()])
    record(session, principal, "legal_hold.placed", "legal_hold", hold.id, view.audit())
    return view


async def release_hold(
    session: AsyncSession, principal: Principal, view: HoldView, note: str | None
) -> None:
    # Conditional on still being active, so of two concurrent releases exactly one wins.
    released = await session.execute(
        update(LegalHold)
        .where(LegalHold.id == view.hold.id, LegalHold.released_at.is_(None))
        .values(released_at=utcnow(), released_by_key_id=principal.key_id, release_note=note)
        .returning(LegalHold.id)
    )
    if released.scalar_one_or_none() is None:
        raise Conflict("This legal hold is already released")
    await session.refresh(view.hold)
    await on_holds_changed(session, principal, [view.scope()])
    record(
        session,
        principal,
        "legal_hold.released",
        "legal_hold",
        view.hold.id,
        {**view.audit(), "with_note": bool(note)},
    )
