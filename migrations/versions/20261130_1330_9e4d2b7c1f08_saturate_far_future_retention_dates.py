"""saturate stored retention dates past the end of the calendar

Before, a rule counted from a date near year 9999 could store a keep_until or delete_by
past it (PostgreSQL computes up to year 294276), which no read could then load. Such a date
becomes 9999-12-31 00:00 UTC, the end of time the code now saturates at
(app.retention.policy.END_OF_TIME): the same value a recompute gives, so no recompute needed.

Revision ID: 9e4d2b7c1f08
Revises: 9f3a6c1e2b47
Create Date: 2026-11-30 13:30:00.000000+00:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "9e4d2b7c1f08"
down_revision: str | None = "9f3a6c1e2b47"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of END_OF_TIME.
_END_OF_TIME = datetime(9999, 12, 31, tzinfo=UTC)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        end = sa.literal(_END_OF_TIME, sa.DateTime(timezone=True))
    else:
        # SQLite holds UTC text in one shape, compared as text.
        end = sa.literal(_END_OF_TIME.strftime("%Y-%m-%d %H:%M:%S.%f"), sa.String())
    records = sa.table("records", sa.column("keep_until"), sa.column("delete_by"))
    for column in (records.c.keep_until, records.c.delete_by):
        op.execute(records.update().where(column > end).values({column.name: end}))


def downgrade() -> None:
    # The dates past the end of time were unreadable: there is nothing to give back.
    pass
