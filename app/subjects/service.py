"""Subject lookup: one indexed probe per identity digest, never a scan."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import Principal
from app.core.db import join_any_of
from app.core.errors import Unprocessable
from app.core.identity import BlindIndexer, InvalidIdentity
from app.records import queries as records
from app.records.models import (
    Record,
    RecordIdentity,
    RecordProfileCategory,
    record_rows,
    visible,
)
from app.records.schemas import LookupIn, LookupOut, LookupSummary


def subject_digests(
    indexer: BlindIndexer, body: LookupIn, controller_id: uuid.UUID | None
) -> list[str]:
    digests = []
    for position, identity in enumerate(body.identities):
        try:
            # Under every normalisation version in use: old hashes still match.
            digests.extend(indexer.matching(identity, controller_id=controller_id))
        except InvalidIdentity as exc:
            raise Unprocessable(str(exc), loc=["body", "identities", position, "value"]) from None
    return digests


def subject_record_ids(digests: list[str]) -> Select[uuid.UUID]:
    return select(RecordIdentity.record_id).where(RecordIdentity.digest.in_(digests))


async def lookup(
    session: AsyncSession,
    principal: Principal,
    indexer: BlindIndexer,
    body: LookupIn,
    limit: int,
    cursor: str | None,
) -> LookupOut:
    visibility = principal.visibility
    if visibility.names_other_controller(body.controller_id):
        # Another customer's records are invisible, as if absent.
        return LookupOut(summary=[], items=[], next_cursor=None)
    controller_id = body.controller_id or visibility.controller_id
    digests = subject_digests(indexer, body, controller_id)
    # The identity index first, then the records by primary key: the same plan whether or not
    # the tables were ever analyzed (see records.ids_carrying).
    ids = await records.ids_carrying(session, digests)
    statement = join_any_of(session, visible(principal), Record.id, ids).where(
        Record.state != "erased"
    )
    summary_columns = select(
        Record.controller_id,
        Record.system,
        RecordProfileCategory.category,
        func.count(Record.id),
    ).join(RecordProfileCategory, RecordProfileCategory.profile_id == Record.profile_id)
    summary_statement = (
        join_any_of(session, summary_columns, Record.id, ids)
        .where(Record.state != "erased", record_rows(visibility))
        .group_by(Record.controller_id, Record.system, RecordProfileCategory.category)
        .order_by(Record.controller_id, Record.system, RecordProfileCategory.category)
    )
    if controller_id is not None:
        statement = statement.where(Record.controller_id == controller_id)
        summary_statement = summary_statement.where(Record.controller_id == controller_id)
    rows, next_cursor = await records.page_rows(session, statement, limit, cursor)
    summary = [
        LookupSummary(controller_id=c, system=s, category=cat, count=n)
        for c, s, cat, n in (await session.execute(summary_statement)).all()
    ]
    return LookupOut(
        summary=summary, items=await records.records_out(session, rows), next_cursor=next_cursor
    )
