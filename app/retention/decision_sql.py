"""The stored decision of policy.resolve written as SQL expressions over a record's row, so a
recompute is one UPDATE per group of profiles sharing their ranked rules: the dates are
computed where the rows are, never fetched into Python one record at a time.

The expressions compute the stored columns (held, keep_until, keep_indefinitely, delete_by,
action) exactly as `policy.resolve` does; tests/retention/test_decision_sql.py checks them
against it on both databases. Calendar arithmetic follows `policy.add_period`: years and
months first, clamped to the month's end (31 January plus one month is the last day of
February), then weeks and days; all in UTC; an end past policy.END_OF_TIME is that end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    String,
    Table,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    null,
    or_,
    select,
    true,
    type_coerce,
)

from app.core.db import UTCDateTime
from app.records.models import Record, RecordIdentity
from app.retention import engine, policy

records: Table = Record.__table__  # type: ignore[assignment]
identities: Table = RecordIdentity.__table__  # type: ignore[assignment]

# SQLite's min() is NULL when any argument is: missing ends become this text, which sorts
# after every date, and back to NULL afterwards.
_SQLITE_NO_END = "~"


@dataclass(frozen=True)
class Dates:
    """Date arithmetic on stored timestamps, per database."""

    dialect: str

    def add_period(
        self, start: ColumnElement[Any], period: policy.Period, nullable: bool = False
    ) -> ColumnElement[Any]:
        """start + period, saturating at policy.END_OF_TIME as policy.add_period does;
        NULL when a nullable start is (an event that has not happened)."""
        end_of_time = literal(policy.END_OF_TIME, UTCDateTime())
        months = period.years * 12 + period.months
        days = period.weeks * 7 + period.days
        end: ColumnElement[Any] = start
        saturated: ColumnElement[Any]
        if self.dialect == "postgresql":
            # In UTC wall-clock time: timestamptz arithmetic would follow the session zone.
            # PostgreSQL's range reaches far past year 9999: compute, then saturate.
            if months or days:
                utc = func.timezone("UTC", start) + func.make_interval(0, months, 0, days)
                end = func.timezone("UTC", utc)
            saturated = func.least(end, end_of_time)
        else:
            # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff': shift the date, keep the time of day.
            day: ColumnElement[Any] = func.substr(start, 1, 10)
            if months:
                shifted = func.date(day, f"+{months} months")
                # SQLite rolls 31 January + 1 month over into March; step back to February's
                # end.
                day = case(
                    (func.substr(shifted, 9, 2) == func.substr(start, 9, 2), shifted),
                    else_=func.date(shifted, "start of month", "-1 day"),
                )
            if days:
                day = func.date(day, f"+{days} days")
            if months or days:
                end = day.concat(func.substr(start, 11))
            # date() is NULL past year 9999, and so is min() of a NULL: the end of time.
            saturated = func.coalesce(func.min(end, end_of_time), end_of_time)
        if nullable:
            # LEAST skips a NULL and coalesce replaces it: keep "not happened" as NULL.
            saturated = case((start.is_(None), null()), else_=saturated)
        return type_coerce(saturated, UTCDateTime())

    def event(self, name: str) -> ColumnElement[Any]:
        """The stored time of a record's event, or NULL while it has not happened. Events are
        stored as UTC ISO text with microseconds (`engine.event_text`)."""
        raw = records.c.events[name].as_string()
        if self.dialect == "postgresql":
            return cast(raw, DateTime(timezone=True))
        # '2025-01-31T08:00:00.000000+00:00' -> '2025-01-31 08:00:00.000000'
        return func.substr(raw, 1, 10).concat(" ").concat(func.substr(raw, 12, 15))

    def greatest(self, values: Sequence[ColumnElement[Any]]) -> ColumnElement[Any]:
        """The latest of values that are never NULL."""
        if len(values) == 1:
            return values[0]
        name = "greatest" if self.dialect == "postgresql" else "max"
        return type_coerce(getattr(func, name)(*values), UTCDateTime())

    def least(self, values: Sequence[ColumnElement[Any]], nullable: bool) -> ColumnElement[Any]:
        """The earliest of values, ignoring NULLs; NULL when all are."""
        if len(values) == 1:
            return values[0]
        if self.dialect == "postgresql":
            return type_coerce(func.least(*values), UTCDateTime())  # LEAST skips NULLs
        if not nullable:
            return type_coerce(func.min(*values), UTCDateTime())
        padded = [func.coalesce(value, _SQLITE_NO_END) for value in values]
        return type_coerce(func.nullif(func.min(*padded), _SQLITE_NO_END), UTCDateTime())

    def anchor(self, anchor: str) -> tuple[ColumnElement[Any], bool]:
        """The anchor's time, and whether it can be NULL (an event that has not happened)."""
        if anchor == policy.ANCHOR_COLLECTED:
            return records.c.collected_at, False
        if anchor == policy.ANCHOR_LAST_ACTIVITY:
            # Never touched since collection: as old as its collection (policy.anchor_time).
            return func.coalesce(records.c.last_activity_at, records.c.collected_at), False
        return self.event(anchor.removeprefix(policy.EVENT_PREFIX)), True


@dataclass(frozen=True)
class _End:
    rule: policy.Rule
    at: ColumnElement[Any]
    nullable: bool


def decision_columns(group: policy.GroupRules, dates: Dates) -> dict[str, ColumnElement[Any]]:
    """The dated stored columns of every record whose profile has these ranked rules.
    `held` depends on holds, not rules: see `held_column`."""
    contract_end = (
        None if group.contract_end is None else literal(group.contract_end, UTCDateTime())
    )

    def ends(rules: Sequence[policy.Rule]) -> list[_End]:
        found = []
        for rule in rules:
            start, nullable = dates.anchor(rule.anchor)
            found.append(_End(rule, dates.add_period(start, rule.period, nullable), nullable))
        return found

    def capped(end: _End) -> _End:
        # policy.contract_capped: a contract end caps every minimum rule but a `law` one.
        if contract_end is None or end.rule.source == policy.SOURCE_LAW:
            return end
        return _End(end.rule, dates.least([end.at, contract_end], end.nullable), False)

    minimum, maximum = [capped(end) for end in ends(group.minimum)], ends(group.maximum)
    # Principle 2: a minimum rule waiting for its event keeps the record indefinitely.
    waiting = [end.at.is_(None) for end in minimum if end.nullable]
    keep_indefinitely: ColumnElement[Any] = or_(*waiting) if waiting else false()
    keep_until: ColumnElement[Any] = null()
    if minimum:
        latest = dates.greatest([end.at for end in minimum])
        keep_until = case((keep_indefinitely, null()), else_=latest) if waiting else latest

    # Principles 3 and 4: the earliest end of the counted maximum rules and the contract
    # end, never before keep_until; none while the record is kept indefinitely.
    counted = [(end.at, end.rule.action, end.nullable) for end in maximum]
    if contract_end is not None:
        counted.append((contract_end, "delete", False))
    delete_by: ColumnElement[Any] = null()
    action: ColumnElement[Any] = literal("delete", String)
    if counted:
        earliest = dates.least([at for at, _, _ in counted], any(n for _, _, n in counted))
        if minimum:
            delete_by = case(
                (or_(keep_indefinitely, earliest.is_(None)), null()),
                else_=dates.greatest([earliest, keep_until]),
            )
        else:
            delete_by = earliest
        deleting = [at for at, rule_action, _ in counted if rule_action == "delete"]
        if len(deleting) < len(counted):
            # Anonymize only when every rule ending first accepts it (policy.resolve).
            action = case(
                (delete_by.is_(None), "delete"),
                (or_(false(), *(at == earliest for at in deleting)), "delete"),
                else_="anonymize",
            )
    return {
        "keep_until": keep_until,
        "keep_indefinitely": keep_indefinitely,
        "delete_by": delete_by,
        "action": action,
    }


def held_column(holds: Sequence[engine.HoldScope]) -> ColumnElement[Any]:
    """Restricted (Art. 18) or reached by one of these holds, which already cover the profile;
    a hold naming identities or records reaches only those."""
    reached: list[ColumnElement[Any]] = []
    for hold in holds:
        conditions: list[ColumnElement[Any]] = []
        if hold.record_ids:
            conditions.append(records.c.id.in_(sorted(hold.record_ids)))
        if hold.digests:
            conditions.append(
                exists().where(
                    identities.c.record_id == records.c.id,
                    identities.c.digest.in_(sorted(hold.digests)),
                )
            )
        reached.append(and_(*conditions) if conditions else true())
    return or_(records.c.state == "restricted", *reached)


def changed(columns: dict[str, ColumnElement[Any]]) -> ColumnElement[bool]:
    """Whether any stored column would change: unchanged rows are not rewritten."""
    return or_(*(records.c[name].is_distinct_from(value) for name, value in columns.items()))


def due_now(columns: dict[str, ColumnElement[Any]], now: ColumnElement[Any]) -> ColumnElement[bool]:
    """policy.status_at(...) == 'due' over stored or computed columns."""
    return and_(
        ~columns["held"],
        ~columns["keep_indefinitely"],
        or_(columns["keep_until"].is_(None), columns["keep_until"] <= now),
        columns["delete_by"].is_not(None),
        columns["delete_by"] <= now,
    )


def stored(names: Sequence[str]) -> dict[str, ColumnElement[Any]]:
    return {name: records.c[name] for name in names}


def scope_filter(record_ids: frozenset[Any], digests: frozenset[str]) -> list[ColumnElement[Any]]:
    """Narrow a statement to the records a hold on identities or records reaches."""
    conditions: list[ColumnElement[Any]] = [records.c.state != "erased"]
    if record_ids:
        conditions.append(records.c.id.in_(sorted(record_ids)))
    if digests:
        conditions.append(
            records.c.id.in_(
                select(identities.c.record_id).where(identities.c.digest.in_(sorted(digests)))
            )
        )
    return conditions
