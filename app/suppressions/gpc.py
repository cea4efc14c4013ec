"""Opt-outs of sale and sharing (CCPA Civ. Code 1798.120, 11 CCR 7025-7026; Colorado,
Connecticut and Virginia likewise), and the Global Privacy Control signal.

A GPC signal speaks for a browser or device: it opts that device out, and any account the
device is known to belong to. The account is found without seeing a raw value: the records of
the same controller that carry the device's blind index name their account (`user_id`), and
that account's digest is copied from `record_identities` as it is."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import Operator
from app.auth.service import Principal
from app.core.errors import Conflict, Unprocessable
from app.core.identity import BlindIndex, BlindIndexer, IdentityType
from app.purposes.models import Purpose
from app.records.models import Record, RecordIdentity
from app.suppressions.schemas import SuppressionCreate
from app.suppressions.service import Suppressed, _blind_indexes, ensure_references, suppress

SALE = "sale.personal_data"
SHARING = "advertising.cross_context_behavioral"
SALE_AND_SHARING = (SALE, SHARING)
# The regimes whose opt-out is an opt-out of sale and of sharing (targeted advertising).
SALE_OPT_OUT_REGIMES = frozenset({"ccpa", "cpa", "ctdpa", "vcdpa"})
# Identities that name an account.
ACCOUNT_TYPES = (IdentityType.user_id,)


async def require_purposes(session: AsyncSession) -> None:
    """409 when the sale and sharing purposes are not in the registry: an opt-out of them
    must not pass silently as done."""
    found = set(
        (await session.scalars(select(Purpose.key).where(Purpose.key.in_(SALE_AND_SHARING)))).all()
    )
    missing = [key for key in SALE_AND_SHARING if key not in found]
    if missing:
        raise Conflict(
            f"The purposes {', '.join(missing)} are not in the registry: run `spix-dsr seed`"
        )


async def linked_accounts(
    session: AsyncSession, digests: Sequence[str], controller_id: uuid.UUID
) -> list[BlindIndex]:
    """The account identities of this controller's records that carry one of the digests."""
    if not digests:
        return []
    carrying = (
        select(RecordIdentity.record_id)
        .join(Record, Record.id == RecordIdentity.record_id)
        .where(RecordIdentity.digest.in_(list(digests)), Record.controller_id == controller_id)
    )
    rows = await session.execute(
        select(RecordIdentity.identity_type, RecordIdentity.key_id, RecordIdentity.digest)
        .where(
            RecordIdentity.record_id.in_(carrying),
            RecordIdentity.identity_type.in_([str(t) for t in ACCOUNT_TYPES]),
        )
        .distinct()
    )
    found = [BlindIndex(IdentityType(t), k, d) for t, k, d in rows]
    return [blind for blind in found if not blind.companion]


async def opt_out_of_sale_and_sharing(
    session: AsyncSession,
    *,
    digests: Sequence[BlindIndex],
    controller_id: uuid.UUID,
    source: str,
    request_id: uuid.UUID | None,
    actor: Principal | Operator,
    linked: bool,
) -> list[Suppressed]:
    """Suppress sale and sharing for the identities, on every channel; with `linked`, for the
    accounts they are known to belong to as well (a GPC signal's device)."""
    await require_purposes(session)
    targets = [d for d in digests if not d.companion]
    if linked:
        known = {d.digest for d in targets}
        accounts = await linked_accounts(session, [d.digest for d in digests], controller_id)
        targets += [account for account in accounts if account.digest not in known]
    made: list[Suppressed] = []
    for purpose in SALE_AND_SHARING:
        made += await suppress(
            session,
            digests=targets,
            channel="all",
            purpose=purpose,
            controller_id=controller_id,
            source=source,
            request_id=request_id,
            actor=actor,
        )
    return made


async def create_gpc_suppression(
    session: AsyncSession, principal: Principal, indexer: BlindIndexer, body: SuppressionCreate
) -> Suppressed:
    """`POST /v1/suppressions` with `Sec-GPC: 1`: an opt-out of sale and sharing for the
    identity and its known accounts, whatever purpose and channel the body names. Answers
    the identity's own sale suppression."""
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
            "Name the controller whose sale and sharing the signal opts out of",
            loc=["body", "controller_id"],
        )
    blinds = _blind_indexes(indexer, body.identity, controller_id, ["body", "identity", "value"])
    await ensure_references(session, purpose=SALE, controller_id=controller_id)
    made = await opt_out_of_sale_and_sharing(
        session,
        digests=blinds[:1],
        controller_id=controller_id,
        source="gpc",
        request_id=None,
        actor=principal,
        linked=True,
    )
    own = blinds[0].digest
    return next(s for s in made if s.suppression.digest == own and s.suppression.purpose == SALE)
