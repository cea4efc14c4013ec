"""Erasure that stays done: a record registered for an identity that an erasure of the same
controller took within the memory period is flagged for review (a system may have restored
it from a backup or collected it again). One query for the whole batch's identities.

The flags are audited and announced: `records.reappeared` to the record's controller (the
platform, or a customer routed by webhook), ids only, in batches of at most FLAGS_PER_EVENT."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import Operator
from app.audit.service import record as audit
from app.auth.service import Principal
from app.core.db import join_any_of
from app.core.ids import new_id
from app.outbox import service as outbox
from app.records.models import ErasureMemory, Reappearance
from app.records.profiles import insert_for

FLAGS_PER_EVENT = 500


@dataclass(frozen=True)
class Candidate:
    """A record just written that did not live before: created, or an erased one revived."""

    record_id: uuid.UUID
    controller_id: uuid.UUID
    system: str
    digests: Sequence[str]


async def flag_reappeared(
    session: AsyncSession,
    actor: Principal | Operator,
    candidates: Iterable[Candidate],
    now: datetime,
) -> list[uuid.UUID]:
    """Flag the candidates whose identities an unexpired erasure of their controller took;
    audited once (ids only). Returns the flagged record ids."""
    candidates = list(candidates)
    digests = {d for c in candidates for d in c.digests}
    if not digests:
        return []
    statement = join_any_of(
        session,
        select(ErasureMemory.digest, ErasureMemory.controller_id, ErasureMemory.request_id),
        ErasureMemory.digest,
        sorted(digests),
    ).where(ErasureMemory.expires_at > now)
    remembered: dict[tuple[str, uuid.UUID], set[uuid.UUID]] = defaultdict(set)
    for digest, controller_id, request_id in await session.execute(statement):
        remembered[(digest, controller_id)].add(request_id)
    if not remembered:
        return []
    rows: list[dict[str, object]] = []
    for candidate in candidates:
        requests: set[uuid.UUID] = set()
        for digest in candidate.digests:
            requests |= remembered.get((digest, candidate.controller_id), set())
        rows.extend(
            {
                "id": new_id(),
                "record_id": candidate.record_id,
                "request_id": request_id,
                "controller_id": candidate.controller_id,
                "system": candidate.system,
                "flagged_at": now,
            }
            for request_id in sorted(requests)
        )
    if not rows:
        return []
    flagged = (
        await session.execute(
            insert_for(session)(Reappearance)
            .on_conflict_do_nothing(index_elements=["record_id", "request_id"])
            .returning(
                Reappearance.id,
                Reappearance.record_id,
                Reappearance.request_id,
                Reappearance.controller_id,
                Reappearance.system,
            ),
            rows,
        )
    ).all()
    if not flagged:
        return []
    audit(
        session,
        actor,
        "records.reappeared",
        "record_batch",
        flagged[0].record_id,
        {
            "flags": [
                {"id": str(f.id), "record_id": str(f.record_id), "request_id": str(f.request_id)}
                for f in flagged
            ]
        },
    )
    by_controller: dict[uuid.UUID, list[dict[str, str]]] = defaultdict(list)
    for f in flagged:
        by_controller[f.controller_id].append(
            {
                "flag_id": str(f.id),
                "record_id": str(f.record_id),
                "request_id": str(f.request_id),
                "system": f.system,
            }
        )
    for controller_id, flags in by_controller.items():
        for start in range(0, len(flags), FLAGS_PER_EVENT):
            batch = flags[start : start + FLAGS_PER_EVENT]
            outbox.emit(
                session,
                "records.reappeared",
                {"flags": batch, "count": len(batch)},
                controller=controller_id,
            )
    return [f.record_id for f in flagged]
