"""What a record's retention is: the decision stored on its row, explained by its profile's
ranked rules, as a caller reads it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Text, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from app.auth.service import Principal
from app.core.db import utcnow
from app.core.errors import NotFound
from app.core.hot_read import HotRead, ReadScope
from app.records.models import Record, RecordProfile
from app.retention import engine, policy
from app.retention.schemas import RetentionDecision
from app.retention_rules.models import RetentionRule

_RULE_NAMES = select(RetentionRule.id, RetentionRule.key, RetentionRule.name).where(
    RetentionRule.id.in_(bindparam("ids", expanding=True))
)


async def name_rules(session: AsyncSession, decisions: Sequence[RetentionDecision]) -> None:
    """Put each rule's key and name beside its id: one indexed read for all the decisions."""
    ids = {rule.id for decision in decisions for rule in decision.rules}
    if not ids:
        return
    connection = await session.connection()  # Core: no ORM execution layer for plain columns
    names = {
        row.id: (row.key, row.name)
        for row in await connection.execute(_RULE_NAMES, {"ids": sorted(ids)})
    }
    put_names(decisions, names)


def put_names(
    decisions: Sequence[RetentionDecision], names: dict[uuid.UUID, tuple[str | None, str]]
) -> None:
    for decision in decisions:
        for rule in decision.rules:
            rule.key, rule.name = names.get(rule.id, (None, None))


class ranked_rule_names(FunctionElement[str]):
    """The key and name of every rule a profile's ranked rules (JSON text) name, as JSON text
    `[[id, key, name], ...]`: a subquery, so a check reads its rules' names in the statement
    that reads its decision rather than in a second round trip. One index probe per rule."""

    type = Text()
    name = "ranked_rule_names"
    inherit_cache = True


_RULES = RetentionRule.__tablename__


@compiles(ranked_rule_names, "postgresql")
def _ranked_rule_names_postgresql(element: ranked_rule_names, compiler: Any, **kw: Any) -> str:
    ranked = compiler.process(element.clauses, **kw)
    return (
        # Only a compiled column and the table's own name are interpolated: no values.
        f"(SELECT json_agg(json_build_array(r.id, r.key, r.name))::text FROM {_RULES} AS r "  # noqa: S608
        "WHERE r.id IN (SELECT (e.value ->> 'id')::uuid "
        f"FROM jsonb_array_elements(CAST({ranked} AS jsonb)) AS e))"
    )


@compiles(ranked_rule_names, "sqlite")
def _ranked_rule_names_sqlite(element: ranked_rule_names, compiler: Any, **kw: Any) -> str:
    ranked = compiler.process(element.clauses, **kw)
    # SQLite keeps a UUID as 32 hex digits, the ranked rules' text with hyphens.
    return (
        f"(SELECT json_group_array(json_array(r.id, r.key, r.name)) FROM {_RULES} AS r "  # noqa: S608
        "WHERE r.id IN (SELECT replace(json_extract(e.value, '$.id'), '-', '') "
        f"FROM json_each({ranked}) AS e))"
    )


def names_read(text: str | None) -> dict[uuid.UUID, tuple[str | None, str]]:
    return {uuid.UUID(rule_id): (key, name) for rule_id, key, name in orjson.loads(text or "[]")}


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
        contract_ends_at=decision.contract_end,
    )


def stored_decision(
    record: Any, ranked_rules: str, hold_ids: list[str], now: datetime
) -> RetentionDecision:
    """The decision kept on a record row, explained by its profile's ranked rules applied to
    the record's dates. The dates come from the row: they are what the due sweep reads."""
    explained = engine.explain(ranked_rules, record, hold_ids, now)
    erased = getattr(record, "state", None) == "erased"
    return RetentionDecision(
        record_id=record.id,
        status="erased"
        if erased
        else policy.status_at(
            record.held, record.keep_until, record.keep_indefinitely, record.delete_by, now
        ),
        keep_until=record.keep_until,
        keep_indefinitely=record.keep_indefinitely,
        delete_by=record.delete_by,
        action=record.action,
        holds=[uuid.UUID(h) for h in hold_ids],
        rules=_rules_out(explained.rules),
        contract_ends_at=explained.contract_end,
    )


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
    ranked_rule_names(RecordProfile.ranked_rules).label("rule_names"),
).join(RecordProfile, RecordProfile.id == Record.profile_id)
# Built once per kind of visibility: constructing a select() per request costs more than
# running it. A key that sees nothing has no statement: it finds no record.
_DECISION_BY_KIND = {
    "everything": HotRead(_DECISION_COLUMNS.where(Record.id == bindparam("record_id"))),
    "system": HotRead(
        _DECISION_COLUMNS.where(
            Record.id == bindparam("record_id"), Record.system == bindparam("system_key")
        )
    ),
    "controller": HotRead(
        _DECISION_COLUMNS.where(
            Record.id == bindparam("record_id"),
            Record.controller_id == bindparam("controller_id"),
        )
    ),
}


async def decision_of(
    reads: ReadScope, principal: Principal, record_id: uuid.UUID
) -> RetentionDecision:
    """The hot path of a retention check: one indexed Core read of the decision columns, the
    profile's ranked rules and the rules' names (a held record also reads which holds)."""
    visibility = principal.visibility
    statement = _DECISION_BY_KIND.get(visibility.kind)
    if statement is None:
        raise NotFound("No record with this id")
    params: dict[str, Any] = {"record_id": record_id}
    if visibility.kind == "system":
        params["system_key"] = visibility.system_key
    elif visibility.kind == "controller":
        params["controller_id"] = visibility.controller_id
    found = await reads.rows(statement, params)
    row = found[0] if found else None
    if row is None:
        raise NotFound("No record with this id")
    hold_ids: list[str] = []
    if row.held:
        session = await reads.session()
        profile = (
            await session.execute(select(RecordProfile).join(Record).where(Record.id == row.id))
        ).scalar_one()
        holds = await engine.holds_of(session, [(row.id, engine.profile_facts(profile))])
        hold_ids = holds[row.id]
    decision = stored_decision(row, row.ranked_rules, hold_ids, utcnow())
    put_names([decision], names_read(row.rule_names))
    return decision
