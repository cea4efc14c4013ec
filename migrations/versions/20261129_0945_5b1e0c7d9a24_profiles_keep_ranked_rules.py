"""profiles keep their ranked rules; records drop their per-record explanation

A record's decision is now recomputed in SQL, so records keep only the dated columns; the
explanation (each rule's end, which rule decided) is derived on read from the profile's
ranked rules and the record's dates. Event times are stored in one UTC shape so SQL can
read them.

Revision ID: 5b1e0c7d9a24
Revises: c71c55f9488c
Create Date: 2026-11-29 09:45:00+00:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from alembic import op

from app.retention import engine

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
    book = engine.RuleBook([engine.to_policy_rule(r) for r in connection.execute(sa.select(rules))])
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
                    "ranked_rules": engine.encode_ranked(book.ranked(engine.profile_facts(row))),
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
                        name: engine.event_text(datetime.fromisoformat(moment))
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
    now = datetime.now(UTC)
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
            facts = engine.profile_facts(row)
            hold_ids = [
                str(h.id)
                for h in holds
                if row.held and h.covers(facts, row.id, frozenset(digests.get(row.id, ())))
            ]
            decision = engine.explain(row.ranked_rules, _aware(row), hold_ids, now)
            values.append(
                {
                    "b_id": row.id,
                    "retention": {
                        "holds": hold_ids,
                        "rules": [
                            {
                                "id": o.rule_id,
                                "kind": o.kind,
                                "ends_at": o.ends_at.isoformat() if o.ends_at else None,
                                "decisive": o.decisive,
                                "outranked": o.outranked,
                            }
                            for o in decision.rules
                        ],
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


def _active_holds(connection: sa.Connection) -> list[engine.HoldScope]:
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
        engine.HoldScope(
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
