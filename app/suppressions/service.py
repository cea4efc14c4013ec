"""Suppressions: opted-out identities, kept as blind indexes, per channel, purpose and controller.

An opt-out belongs to the controller whose message it answers: an SMS STOP sent to a
customer's number suppresses that customer's messages, not Spix's own marketing."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ARRAY, Select, String, and_, any_, bindparam, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import Operator, record
from app.auth.service import Principal
from app.controllers.models import Controller
from app.controllers.service import platform_controller_of
from app.core.db import utcnow
from app.core.errors import Forbidden, Unprocessable
from app.core.hot_read import HotRead, ReadScope, unnested_strings
from app.core.identity import (
    CURRENT_VERSION,
    BlindIndex,
    BlindIndexer,
    Identity,
    InvalidIdentity,
    parse_label,
)
from app.core.ids import new_id
from app.purposes.models import Purpose
from app.suppressions.models import Suppression
from app.suppressions.schemas import (
    SuppressionCheck,
    SuppressionCheckOut,
    SuppressionCreate,
    SuppressionMatch,
    SuppressionOut,
)

_OUT_COLUMNS = (
    Suppression.id,
    Suppression.identity_type,
    Suppression.digest,
    Suppression.channel,
    Suppression.purpose,
    Suppression.controller_id,
    Suppression.source,
    Suppression.request_id,
    Suppression.created_at,
)


@dataclass(frozen=True, slots=True)
class Suppressed:
    suppression: SuppressionOut
    created: bool


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


async def ensure_references(
    session: AsyncSession,
    *,
    purpose: str,
    controller_id: uuid.UUID,
    loc: Sequence[str | int] = ("body",),
) -> None:
    """422 naming the field when the purpose or the controller does not exist."""
    if await session.scalar(select(Purpose.key).where(Purpose.key == purpose)) is None:
        raise Unprocessable("No purpose with this key", loc=[*loc, "purpose"])
    if await session.scalar(select(Controller.id).where(Controller.id == controller_id)) is None:
        raise Unprocessable("No controller with this id", loc=[*loc, "controller_id"])


async def suppress(
    session: AsyncSession,
    *,
    digests: Sequence[BlindIndex],
    channel: str,
    purpose: str,
    controller_id: uuid.UUID,
    source: str,
    request_id: uuid.UUID | None,
    actor: Principal | Operator,
) -> list[Suppressed]:
    """Suppress each identity, or find it already suppressed; audits the new ones.

    The purpose and controller must exist (see `ensure_references`). Safe under concurrency:
    the unique index decides which of two simultaneous inserts creates the row, and the other
    reads it."""
    unique = {blind.digest: blind for blind in digests}
    if not unique:
        return []
    now = utcnow()
    rows = [
        {
            "id": new_id(),
            "identity_type": str(blind.type),
            "digest": blind.digest,
            "key_id": blind.key_id,
            "channel": channel,
            "purpose": purpose,
            "controller_id": controller_id,
            "source": source,
            "request_id": request_id,
            "created_by_key_id": actor.key_id,
            "created_at": now,
        }
        for blind in unique.values()
    ]
    inserted = set(
        (
            await session.execute(
                _insert(session)(Suppression)
                .on_conflict_do_nothing(
                    index_elements=["digest", "controller_id", "purpose", "channel"]
                )
                .returning(Suppression.id),
                rows,
            )
        ).scalars()
    )
    found = (
        await session.execute(
            select(*_OUT_COLUMNS).where(
                Suppression.digest.in_(list(unique)),
                Suppression.controller_id == controller_id,
                Suppression.purpose == purpose,
                Suppression.channel == channel,
            )
        )
    ).all()
    by_digest = {row.digest: row for row in found}
    results = []
    for digest in unique:
        row = by_digest[digest]
        created = row.id in inserted
        if created:
            record(
                session,
                actor,
                "suppression.created",
                "suppression",
                row.id,
                {
                    "controller_id": str(controller_id),
                    "identity_type": row.identity_type,
                    "channel": channel,
                    "purpose": purpose,
                    "source": source,
                    "request_id": str(request_id) if request_id else None,
                },
                subject_request_id=request_id,
            )
        results.append(Suppressed(SuppressionOut.model_validate(row), created))
    return results


def _blind_indexes(
    indexer: BlindIndexer,
    identity: Identity,
    controller_id: uuid.UUID,
    loc: list[str | int],
) -> list[BlindIndex]:
    """The identity's current hash first, then its hashes under the legacy versions in use."""
    try:
        return indexer.all_of(identity, controller_id=controller_id)
    except InvalidIdentity as exc:
        # The message names the type and what is wrong, never the value.
        raise Unprocessable(str(exc), loc=loc) from None


async def _carry_forward(
    session: AsyncSession,
    actor: Principal,
    blinds: list[BlindIndex],
    body: SuppressionCreate,
    controller_id: uuid.UUID,
) -> None:
    """This identity's opt-out for the scope, stored under an older normalisation, moves to
    the current hash and label: sending an opt-out again moves it over, and it stays one row."""
    current = blinds[0]
    rows = (
        await session.execute(
            select(Suppression.id, Suppression.digest, Suppression.key_id)
            .where(
                Suppression.digest.in_([b.digest for b in blinds]),
                Suppression.controller_id == controller_id,
                Suppression.purpose == body.purpose,
                Suppression.channel == body.channel,
            )
            .order_by(Suppression.created_at)
        )
    ).all()
    same = [row for row in rows if row.digest == current.digest]
    if not rows or (same and same[0].key_id == current.key_id):
        return
    old = same[0] if same else rows[0]
    await session.execute(
        update(Suppression)
        .where(Suppression.id == old.id)
        .values(digest=current.digest, key_id=current.key_id)
    )
    record(
        session,
        actor,
        "suppression.rehashed",
        "suppression",
        old.id,
        {
            "identity_type": str(current.type),
            "from_version": parse_label(old.key_id)[1],
            "to_version": CURRENT_VERSION,
        },
    )


async def create_suppression(
    session: AsyncSession, principal: Principal, indexer: BlindIndexer, body: SuppressionCreate
) -> Suppressed:
    controller_id = body.controller_id
    if principal.role == "controller":
        if controller_id is not None and controller_id != principal.controller_id:
            raise Unprocessable(
                "A controller key suppresses for its own controller only",
                loc=["body", "controller_id"],
            )
        controller_id = principal.controller_id
    if controller_id is None:
        raise Unprocessable(
            "Name the controller whose messages the subject opted out of",
            loc=["body", "controller_id"],
        )
    blinds = _blind_indexes(indexer, body.identity, controller_id, ["body", "identity", "value"])
    await ensure_references(session, purpose=body.purpose, controller_id=controller_id)
    await _carry_forward(session, principal, blinds, body, controller_id)
    (result,) = await suppress(
        session,
        digests=blinds[:1],
        channel=body.channel,
        purpose=body.purpose,
        controller_id=controller_id,
        source=body.source,
        request_id=None,
        actor=principal,
    )
    return result


def listed(
    principal: Principal,
    *,
    controller_id: uuid.UUID | None,
    channel: str | None,
    purpose: str | None,
    source: str | None,
) -> Select[Suppression]:
    # A controller filter naming another customer than a controller key's own finds nothing.
    statement = select(Suppression).where(
        principal.visibility.where(controller=lambda own: Suppression.controller_id == own)
    )
    if controller_id is not None:
        statement = statement.where(Suppression.controller_id == controller_id)
    if channel is not None:
        statement = statement.where(Suppression.channel == channel)
    if purpose is not None:
        statement = statement.where(Suppression.purpose == purpose)
    if source is not None:
        statement = statement.where(Suppression.source == source)
    return statement


# The purpose and controller rows are joined in so that a typo in either is an error, not a
# silent "not suppressed" (which would send marketing to someone who opted out); each is one
# primary-key probe, and the suppressions come from the unique (digest, ...) index. Built once:
# constructing the select costs more than running it.
_CHECKED = (
    Suppression.id,
    Suppression.identity_type,
    Suppression.channel,
    Suppression.purpose,
    Suppression.controller_id,
    Suppression.source,
    Suppression.created_at,
)
_SCOPE = (
    Suppression.controller_id == bindparam("controller_id"),
    Suppression.purpose == bindparam("purpose"),
)


def _check_statement(found: Any) -> Select[*tuple[Any, ...]]:
    """The purpose and the controller, outer-joined to `found` (the matching opt-outs)."""
    return (
        select(*found)
        .select_from(Purpose)
        .join(Controller, Controller.id == bindparam("controller_id"))
        .where(Purpose.key == bindparam("purpose"))
    )


def _check_postgresql() -> Select[*tuple[Any, ...]]:
    """On PostgreSQL each digest (from `unnested_strings`) probes the unique index in a
    LATERAL subquery that OFFSET 0 keeps from being merged into the join (as
    `records.carrying` does), so that every plan, custom or generic, is index probes. With
    the digests as `= ANY(array)` in the join, the generic plan of a table of a few hundred
    opt-outs scanned it whole, the custom plans looked cheaper, and PostgreSQL planned the
    check afresh at every call: either cost more than the check's own run."""
    wanted = unnested_strings("digests")
    probe = (
        select(*_CHECKED)
        .where(
            Suppression.digest == wanted.c.value,
            *_SCOPE,
            Suppression.channel == any_(bindparam("channels", type_=ARRAY(String()))),
        )
        .offset(0)
        .lateral("probe")
    )
    found = select(probe).select_from(wanted).join(probe, true()).subquery("found")
    return _check_statement(found.c).outerjoin(found, true())


def _check_other() -> Select[*tuple[Any, ...]]:
    matching = and_(
        Suppression.digest.in_(bindparam("digests", expanding=True)),
        *_SCOPE,
        Suppression.channel.in_(bindparam("channels", expanding=True)),
    )
    return _check_statement(_CHECKED).outerjoin(Suppression, matching)


# One statement: a row per matching opt-out, or one row of NULLs when none matches (the purpose
# and the controller exist), or no row (one of them does not).
_CHECK = HotRead(_check_postgresql(), other=_check_other())


async def check(
    reads: ReadScope,
    principal: Principal,
    indexer: BlindIndexer,
    body: SuppressionCheck,
) -> SuppressionCheckOut:
    """Whether any of the identities opted out of this channel (or of all channels) for this
    purpose and controller. Called before every marketing send: one statement, no ORM loads."""
    visibility = principal.visibility
    if visibility.nothing:
        # Not "not suppressed": an answer this key may not have must not read as "send".
        raise Forbidden("This key's role may not check suppressions")
    controller_id = body.controller_id
    foreign = visibility.names_other_controller(controller_id)
    if visibility.controller_id is not None:
        controller_id = controller_id or visibility.controller_id
    elif controller_id is None:
        controller_id = await platform_controller_of(reads)
        if controller_id is None:
            raise Unprocessable(
                "No platform controller exists yet (run `spix-dsr seed`); name controller_id",
                loc=["body", "controller_id"],
            )
    assert controller_id is not None
    # Under every normalisation version in use: opt-outs stored under an older one count.
    digests = list(
        {
            blind.digest
            for i, identity in enumerate(body.identities)
            for blind in _blind_indexes(
                indexer, identity, controller_id, ["body", "identities", i, "value"]
            )
        }
    )
    if foreign:
        # Another customer's suppressions are invisible to this key, as if absent.
        return SuppressionCheckOut(suppressed=False, matches=[])
    rows = await reads.rows(
        _CHECK,
        {
            "digests": digests,
            "controller_id": controller_id,
            "purpose": body.purpose,
            "channels": [body.channel, "all"],
        },
    )
    if not rows:
        await ensure_references(
            await reads.session(), purpose=body.purpose, controller_id=controller_id
        )
    matches = [
        SuppressionMatch.model_validate(row)
        for row in sorted((r for r in rows if r.id is not None), key=lambda r: r.created_at)
    ]
    return SuppressionCheckOut(suppressed=bool(matches), matches=matches)
