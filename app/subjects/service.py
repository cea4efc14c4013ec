"""Subject lookup: one indexed probe per identity digest, never a scan."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from sqlalchemy import Select, bindparam, func, select

from app.auth.service import Principal
from app.core.errors import Unprocessable
from app.core.hot_read import HotRead, ReadScope
from app.core.identity import BlindIndexer, InvalidIdentity
from app.core.pagination import cursor_uuid, decode_cursor, encode_cursor
from app.records import queries as records
from app.records.models import Record, RecordIdentity, RecordProfile, RecordProfileCategory
from app.records.schemas import LookupIn, LookupOut, LookupSummary
from app.retention.answer import ranked_rule_names


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


# The lookup's statements, built once per shape: constructing a select() per request costs
# more than running it. A shape is the dialect (how the digests are bound), what the key
# sees, whether a controller is named, and whether a page follows a cursor.
_Shape = tuple[str, str, bool, bool]
_STATEMENTS: dict[_Shape, tuple[HotRead, Select[*tuple[Any, ...]]]] = {}


def _statements(shape: _Shape) -> tuple[HotRead, Select[*tuple[Any, ...]]]:
    """(the page of records, the summary) for one shape."""
    found = _STATEMENTS.get(shape)
    if found is not None:
        return found
    dialect, kind, named, paged = shape
    conditions = [Record.state != "erased"]
    if kind == "system":
        conditions.append(Record.system == bindparam("system_key"))
    if kind == "controller" or named:
        conditions.append(Record.controller_id == bindparam("controller_id"))
    # The identity index first, then the records by primary key, in one statement: the same
    # plan whether or not the tables were ever analyzed (see records.carrying).
    found = records.carrying(dialect)
    page = (
        records.RECORD_COLUMNS.add_columns(
            ranked_rule_names(RecordProfile.ranked_rules).label("rule_names")
        )
        .join(found, found.c.record_id == Record.id)
        .where(*conditions)
    )
    if paged:
        page = page.where(Record.id > bindparam("after"))
    page = page.order_by(Record.id).limit(bindparam("limit"))
    counted = records.carrying(dialect)
    summary = (
        select(Record.controller_id, Record.system, RecordProfileCategory.category, func.count())
        .select_from(Record)
        .join(counted, counted.c.record_id == Record.id)
        .join(RecordProfileCategory, RecordProfileCategory.profile_id == Record.profile_id)
        .where(*conditions)
    )
    summary = summary.group_by(Record.controller_id, Record.system, RecordProfileCategory.category)
    _STATEMENTS[shape] = HotRead(page), summary
    return _STATEMENTS[shape]


def _summary_of(rows: list[Any]) -> list[LookupSummary]:
    """The summary of a page that holds every record found: counted here, not read again."""
    counts = Counter(
        (row.controller_id, row.system, category) for row in rows for category in row.categories
    )
    return _summary_sorted(counts.items())


def _summary_sorted(groups: Any) -> list[LookupSummary]:
    # Sorted here, by code point, on both databases (a collation could order names otherwise).
    return [
        LookupSummary(controller_id=c, system=s, category=cat, count=n)
        for (c, s, cat), n in sorted(groups)
    ]


async def lookup(
    reads: ReadScope,
    principal: Principal,
    indexer: BlindIndexer,
    body: LookupIn,
    limit: int,
    cursor: str | None,
) -> LookupOut:
    """One statement: the record ids from the identity index, then the page of those records
    by primary key with their profiles, identities and rules' names. A second counts the
    summary only when the records found do not fit in one page."""
    visibility = principal.visibility
    if visibility.nothing or visibility.names_other_controller(body.controller_id):
        # Another customer's records are invisible, as if absent.
        return LookupOut(summary=[], items=[], next_cursor=None)
    controller_id = body.controller_id or visibility.controller_id
    digests = subject_digests(indexer, body, controller_id)
    shape = (reads.dialect, visibility.kind, controller_id is not None, bool(cursor))
    page, summary = _statements(shape)
    params: dict[str, Any] = {"digests": digests, "limit": limit + 1}
    if visibility.kind == "system":
        params["system_key"] = visibility.system_key
    if controller_id is not None:
        params["controller_id"] = controller_id
    if cursor is not None:
        (params["after"],) = decode_cursor(cursor, cursor_uuid)
    rows = await reads.rows(page, params)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor([rows[-1].id])
    if cursor is None and next_cursor is None:
        counted = _summary_of(rows)
    else:
        del params["limit"]
        params.pop("after", None)
        session = await reads.session()
        groups = ((tuple(row[:3]), row[3]) for row in await session.execute(summary, params))
        counted = _summary_sorted(groups)
    items = await records.records_out_of_rows(reads, rows)
    return LookupOut(summary=counted, items=items, next_cursor=next_cursor)
