"""audit events are written sealed and linked into the chain after their commit

A transaction no longer locks the chain head: it writes its events with a seal (an HMAC of
the content under the audit key) and the order they were written in (`entry`: a sequence on
PostgreSQL), with no chain position yet; a linking step after the commit assigns `seq`,
`prev_hash` and `hash` (so those become nullable). The events already chained keep their
positions and links untouched, and their `entry` is their `seq`, so new events are written
after them; they need no seal (their links protect them).

Downgrading refuses while events wait to be linked (`spix-dsr audit chain` links them; the
older code would never see them), then drops the two columns.

Revision ID: b3d9f1a7c2e4
Revises: e4a7c2d9b8f1
Create Date: 2026-12-01 09:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b3d9f1a7c2e4"
down_revision: str | None = "e4a7c2d9b8f1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POSITION = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PENDING = "seq IS NULL"


def _nullable_links(nullable: bool) -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("seq", existing_type=POSITION, nullable=nullable)
        for column in ("prev_hash", "hash"):
            batch_op.alter_column(column, existing_type=sa.String(length=64), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("entry", POSITION, nullable=True))
        batch_op.add_column(sa.Column("seal", sa.String(length=64), nullable=True))
    op.execute("UPDATE audit_events SET entry = seq")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("entry", existing_type=POSITION, nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_audit_events_entry"), ["entry"])
    _nullable_links(True)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE audit_events_entry_seq OWNED BY audit_events.entry")
        op.execute(
            "SELECT setval('audit_events_entry_seq', COALESCE(max(entry), 0) + 1, false)"
            " FROM audit_events"
        )
        op.execute(
            "ALTER TABLE audit_events ALTER COLUMN entry"
            " SET DEFAULT nextval('audit_events_entry_seq')"
        )
    op.create_index(
        "ix_audit_events_pending",
        "audit_events",
        ["entry"],
        unique=False,
        postgresql_where=sa.text(PENDING),
        sqlite_where=sa.text(PENDING),
    )


def downgrade() -> None:
    waiting = op.get_bind().scalar(sa.text("SELECT count(*) FROM audit_events WHERE seq IS NULL"))
    if waiting:
        raise RuntimeError(
            f"{waiting} audit events wait to be linked into the chain: run `spix-dsr audit "
            "chain` before downgrading (the older code would never link them)"
        )
    op.drop_index("ix_audit_events_pending", table_name="audit_events")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE audit_events ALTER COLUMN entry DROP DEFAULT")
        op.execute("DROP SEQUENCE audit_events_entry_seq")
    _nullable_links(False)
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_audit_events_entry"), type_="unique")
        batch_op.drop_column("seal")
        batch_op.drop_column("entry")
