"""profiles keep their ranked rules; records drop their per-record explanation

A record's decision is now recomputed in SQL, so records keep only the dated columns; the
explanation (each rule's end, which rule decided) is derived on read from the profile's
ranked rules and the record's dates. Event times are stored in one UTC shape so SQL can
read them.

The retention logic this needs (ranking a profile's rules, their JSON text, event times,
a record's explanation, hold scopes) is this revision's own frozen copy, at the end of the
file, of app.retention.engine and app.retention.policy as they were when it was written:
replayed later, the revision does what it did then, whatever the application has become.

Revision ID: 5b1e0c7d9a24
Revises: c71c55f9488c
Create Date: 2026-11-29 09:45:00+00:00
"""

import calendar
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision: str = "5b1e0c7d9a24"
down_revision: str | None = "c71c55f9488c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 1000

profiles = sa.table(
    "record_profiles",
    sa.column("id", sa.Uuid()),
    sa.column("controller_id", sa.Uuid()),
    sa.column("system", sa.String()),
    sa.column("region", sa.String()),
    sa.column("categories", sa.JSON()),
    sa.column("purposes", sa.JSON()),
    sa.column("ranked_rules", sa.Text()),
)
records = sa.table(
    "records",
    sa.column("id", sa.Uuid()),
    sa.column("profile_id", sa.Uuid()),
    sa.column("collected_at", sa.DateTime(timezone=True)),
    sa.column("last_activity_at", sa.DateTime(timezone=True)),
    sa.column("events", sa.JSON()),
    sa.column("state", sa.String()),
    sa.column("held", sa.Boolean()),
    sa.column("retention", sa.JSON()),
)
rules = sa.table(
    "retention_rules",
    *(
        sa.column(name)
        for name in (
            "kind",
            "period",
            "anchor",
            "action",
            "category",
            "purpose",
            "system",
            "region",
            "source",
            "citation",
        )
    ),
    sa.column("id", sa.Uuid()),
    sa.column("controller_id", sa.Uuid()),
)


def _keyset(connection: sa.Connection, statement: sa.Select[Any], key: Any) -> Any:
    """Rows of `statement` in chunks along `key`: constant memory on any table size."""
    last = None
    while True:
        page = statement.order_by(key).limit(CHUNK)
        if last is not None:
            page = page.where(key > last)
        rows = connection.execute(page).all()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def upgrade() -> None:
    # Plain ALTER TABLE, no batch copy: SQLite (3.35+) adds and drops columns in place, and a
    # copy of record_profiles would break the foreign keys of its records.
    op.add_column(
        "record_profiles", sa.Column("ranked_rules", sa.Text(), server_default="[]", nullable=False)
    )
    connection = op.get_bind()
    # In id order, as the application ranks them, so a profile's text is the one it writes.
    book = [_rule(r) for r in connection.execute(sa.select(rules).order_by(rules.c.id))]
    columns = sa.select(
        profiles.c.id,
        profiles.c.controller_id,
        profiles.c.system,
        profiles.c.region,
        profiles.c.categories,
        profiles.c.purposes,
    )
    for rows in _keyset(connection, columns, profiles.c.id):
        connection.execute(
            profiles.update().where(profiles.c.id == sa.bindparam("b_id")),
            [
                {
                    "b_id": row.id,
                    "ranked_rules": _encode_ranked(_ranked(book, row)),
                }
                for row in rows
            ],
        )
    with_events = sa.select(records.c.id, records.c.events).where(
        sa.cast(records.c.events, sa.Text) != "{}"
    )
    for rows in _keyset(connection, with_events, records.c.id):
        connection.execute(
            records.update().where(records.c.id == sa.bindparam("b_id")),
            [
                {
                    "b_id": row.id,
                    "events": {
                        name: _event_text(datetime.fromisoformat(moment))
                        for name, moment in (row.events or {}).items()
                    },
                }
                for row in rows
            ],
        )
    op.drop_column("records", "retention")


def downgrade() -> None:
    op.add_column("records", sa.Column("retention", sa.JSON(), server_default="{}", nullable=False))
    # Each record's explanation again, from its profile's ranked rules and its dates.
    connection = op.get_bind()
    holds = _active_holds(connection)
    statement = (
        sa.select(
            records.c.id,
            records.c.collected_at,
            records.c.last_activity_at,
            records.c.events,
            records.c.state,
            records.c.held,
            profiles.c.controller_id,
            profiles.c.system,
            profiles.c.region,
            profiles.c.categories,
            profiles.c.purposes,
            profiles.c.ranked_rules,
        )
        .join(profiles, profiles.c.id == records.c.profile_id)
        .where(records.c.state != "erased")
    )
    for rows in _keyset(connection, statement, records.c.id):
        digests = _digests(connection, [row.id for row in rows if row.held])
        values = []
        for row in rows:
            hold_ids = [
                str(h.id)
                for h in holds
                if row.held and h.covers(row, row.id, frozenset(digests.get(row.id, ())))
            ]
            values.append(
                {
                    "b_id": row.id,
                    "retention": {
                        "holds": hold_ids,
                        "rules": _explain(row.ranked_rules, _aware(row)),
                    },
                }
            )
        connection.execute(records.update().where(records.c.id == sa.bindparam("b_id")), values)
    op.drop_column("record_profiles", "ranked_rules")


def _aware(row: Any) -> SimpleNamespace:
    """The record's dates as the policy wants them: aware UTC (SQLite hands back naive)."""

    def utc(moment: datetime | None) -> datetime | None:
        if moment is None or moment.tzinfo is not None:
            return moment
        return moment.replace(tzinfo=UTC)

    return SimpleNamespace(
        collected_at=utc(row.collected_at),
        last_activity_at=utc(row.last_activity_at),
        events=row.events,
        state=row.state,
    )


def _active_holds(connection: sa.Connection) -> list["_HoldScope"]:
    held = sa.table(
        "legal_holds",
        sa.column("id", sa.Uuid()),
        sa.column("controller_id", sa.Uuid()),
        sa.column("system"),
        sa.column("category"),
        sa.column("released_at"),
    )
    identities = sa.table(
        "legal_hold_identities", sa.column("hold_id", sa.Uuid()), sa.column("digest")
    )
    named = sa.table(
        "legal_hold_records", sa.column("hold_id", sa.Uuid()), sa.column("record_id", sa.Uuid())
    )
    digests: dict[Any, set[str]] = {}
    for hold_id, digest in connection.execute(sa.select(identities.c.hold_id, identities.c.digest)):
        digests.setdefault(hold_id, set()).add(digest)
    record_ids: dict[Any, set[Any]] = {}
    for hold_id, record_id in connection.execute(sa.select(named.c.hold_id, named.c.record_id)):
        record_ids.setdefault(hold_id, set()).add(record_id)
    return [
        _HoldScope(
            id=h.id,
            controller_id=h.controller_id,
            system=h.system,
            category=h.category,
            digests=frozenset(digests.get(h.id, ())),
            record_ids=frozenset(record_ids.get(h.id, ())),
        )
        for h in connection.execute(sa.select(held).where(held.c.released_at.is_(None)))
    ]


def _digests(connection: sa.Connection, record_ids: list[Any]) -> dict[Any, set[str]]:
    found: dict[Any, set[str]] = {}
    if record_ids:
        identities = sa.table(
            "record_identities", sa.column("record_id", sa.Uuid()), sa.column("digest")
        )
        for record_id, digest in connection.execute(
            sa.select(identities.c.record_id, identities.c.digest).where(
                identities.c.record_id.in_(record_ids)
            )
        ):
            found.setdefault(record_id, set()).add(digest)
    return found


# Frozen retention logic: this revision's copy of what it used from app.retention.engine and
# app.retention.policy on 2026-11-29, trimmed to what it reads and writes. Keep it as it is:
# it must not follow later changes to the application.

_ROLES = ("minimum", "maximum", "outranked")
_PERIOD_RE = re.compile(r"P(?:([0-9]+)Y)?(?:([0-9]+)M)?(?:([0-9]+)W)?(?:([0-9]+)D)?")

_Period = tuple[int, int, int, int]  # years, months, weeks, days


@dataclass(frozen=True)
class _Rule:
    id: str
    kind: str
    period: _Period
    anchor: str
    action: str
    category: str | None = None
    purpose: str | None = None
    controller_id: Any = None
    system: str | None = None
    region: str | None = None


def _parse_period(text: str) -> _Period:
    match = _PERIOD_RE.fullmatch(text)
    if match is None or all(g is None for g in match.groups()):
        raise ValueError("a retention rule's period is not an ISO 8601 duration")
    years, months, weeks, days = (int(g) if g is not None else 0 for g in match.groups())
    return years, months, weeks, days


def _period_text(period: _Period) -> str:
    text = "".join(f"{n}{unit}" for n, unit in zip(period, "YMWD", strict=True) if n)
    return f"P{text or '0D'}"


def _add_period(start: datetime, period: _Period) -> datetime:
    years, months, weeks, days = period
    # Years and months together, so 29 Feb + P1Y1M is 29 March, not 28 March.
    month_index = start.month - 1 + years * 12 + months
    year = start.year + month_index // 12
    month = month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day) + timedelta(weeks=weeks, days=days)


def _rule(row: Any) -> _Rule:
    return _Rule(
        id=str(row.id),
        kind=row.kind,
        period=_parse_period(row.period),
        anchor=row.anchor,
        action=row.action,
        category=row.category,
        purpose=row.purpose,
        controller_id=row.controller_id,
        system=row.system,
        region=row.region,
    )


def _id_text(value: Any) -> str | None:
    return None if value is None else str(value).lower()


def _category_covers(prefix: str, category: str) -> bool:
    return category == prefix or category.startswith(prefix + ".")


def _applies(rule: _Rule, profile: Any) -> bool:
    """`profile` has controller_id, system, region, categories and purposes."""
    if rule.controller_id is not None and _id_text(rule.controller_id) != _id_text(
        profile.controller_id
    ):
        return False
    if rule.system is not None and rule.system != profile.system:
        return False
    if rule.region is not None and rule.region != profile.region:
        return False
    if rule.purpose is not None and rule.purpose not in profile.purposes:
        return False
    return rule.category is None or any(
        _category_covers(rule.category, category) for category in profile.categories
    )


def _specificity(rule: _Rule) -> tuple[int, int, int, int]:
    # (controller set, system set, category depth, purpose set), compared in that order.
    depth = 0 if rule.category is None else rule.category.count(".") + 1
    return (
        int(rule.controller_id is not None),
        int(rule.system is not None),
        depth,
        int(rule.purpose is not None),
    )


def _ranked(rules: list[_Rule], profile: Any) -> dict[str, tuple[_Rule, ...]]:
    """The rules that apply to the profile: minimum, the most specific maximum, outranked."""
    applicable = [rule for rule in rules if _applies(rule, profile)]
    maximum = [rule for rule in applicable if rule.kind == "maximum"]
    top = max((_specificity(rule) for rule in maximum), default=None)
    return {
        "minimum": tuple(rule for rule in applicable if rule.kind == "minimum"),
        "maximum": tuple(rule for rule in maximum if _specificity(rule) == top),
        "outranked": tuple(rule for rule in maximum if _specificity(rule) != top),
    }


def _encode_ranked(ranked: dict[str, tuple[_Rule, ...]]) -> str:
    return orjson.dumps(
        [
            {
                "role": role,
                "id": rule.id,
                "kind": rule.kind,
                "period": _period_text(rule.period),
                "anchor": rule.anchor,
                "action": rule.action,
            }
            for role in _ROLES
            for rule in ranked[role]
        ]
    ).decode()


@lru_cache(maxsize=4096)
def _decode_ranked(text: str) -> dict[str, tuple[_Rule, ...]]:
    found: dict[str, list[_Rule]] = {role: [] for role in _ROLES}
    for item in orjson.loads(text):
        found[item["role"]].append(
            _Rule(
                id=item["id"],
                kind=item["kind"],
                period=_parse_period(item["period"]),
                anchor=item["anchor"],
                action=item["action"],
            )
        )
    return {role: tuple(rules) for role, rules in found.items()}


def _event_text(moment: datetime) -> str:
    """An event time in its stored shape: UTC ISO text with microseconds."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _explain(ranked_rules: str, record: Any) -> list[dict[str, Any]]:
    """Each rule's outcome for a record (collected_at, last_activity_at, events): its end,
    whether it decides, whether it is outranked."""
    ranked = _decode_ranked(ranked_rules)
    events = {name: datetime.fromisoformat(ts) for name, ts in (record.events or {}).items()}

    def end(rule: _Rule) -> datetime | None:
        if rule.anchor == "collected_at":
            start = record.collected_at
        elif rule.anchor == "last_activity_at":
            start = record.last_activity_at
            if start is None:
                start = record.collected_at
        else:
            start = events.get(rule.anchor.removeprefix("event:"))
        return None if start is None else _add_period(start, rule.period)

    # The longest minimum wins; a minimum waiting for its event keeps the record indefinitely.
    min_ends = [(rule, end(rule)) for rule in ranked["minimum"]]
    keep_indefinitely = any(ends is None for _, ends in min_ends)
    keep_until = None
    if not keep_indefinitely:
        keep_until = max((ends for _, ends in min_ends if ends is not None), default=None)
    # The earliest end of the counted maximum rules decides, when the record has a delete_by.
    max_ends = [(rule, end(rule)) for rule in ranked["maximum"]]
    earliest = min((ends for _, ends in max_ends if ends is not None), default=None)
    deletes = earliest is not None and not keep_indefinitely
    outcomes = [
        (rule, ends, (ends is None) if keep_indefinitely else (ends == keep_until), False)
        for rule, ends in min_ends
    ]
    outcomes += [(rule, ends, deletes and ends == earliest, False) for rule, ends in max_ends]
    outcomes += [(rule, end(rule), False, True) for rule in ranked["outranked"]]
    return [
        {
            "id": rule.id,
            "kind": rule.kind,
            "ends_at": ends.isoformat() if ends else None,
            "decisive": decisive,
            "outranked": outranked,
        }
        for rule, ends, decisive, outranked in outcomes
    ]


@dataclass(frozen=True)
class _HoldScope:
    id: Any
    controller_id: Any
    system: str | None
    category: str | None
    digests: frozenset[str]
    record_ids: frozenset[Any]

    def covers(self, profile: Any, record_id: Any, digests: frozenset[str]) -> bool:
        if self.controller_id is not None and self.controller_id != profile.controller_id:
            return False
        if self.system is not None and self.system != profile.system:
            return False
        if self.category is not None and not any(
            _category_covers(self.category, c) for c in profile.categories
        ):
            return False
        if self.digests and self.digests.isdisjoint(digests):
            return False
        return not (self.record_ids and record_id not in self.record_ids)
