"""notices and instructions: extension notice date, UK pause start, scope instruction refs,
a customer's standing instruction

- subject_requests.extension_notified_at: when the subject was told of an extension;
- subject_requests.clock_paused_at: when identity evidence was asked for (a regime whose
  clock pauses for it, UK GDPR Art. 12A);
- request_scopes.instruction_ref: the customer's instruction an admin decision or an
  automatic run acted on;
- controllers.standing_instruction_ref: the customer's standing instruction that lets its
  scopes run without waiting (auto_execute).

Revision ID: c7e2a9d4f1b3
Revises: ca8287aecdc0
Create Date: 2026-11-30 14:10:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c7e2a9d4f1b3"
down_revision: str | None = "ca8287aecdc0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ADD / DROP COLUMN on both databases (SQLite has both since 3.35): a batch copy of
# `controllers` would have to drop a table other tables' foreign keys point at.
COLUMNS = (
    ("subject_requests", sa.Column("extension_notified_at", sa.DateTime(timezone=True))),
    ("subject_requests", sa.Column("clock_paused_at", sa.DateTime(timezone=True))),
    ("request_scopes", sa.Column("instruction_ref", sa.String(length=500))),
    ("controllers", sa.Column("standing_instruction_ref", sa.String(length=500))),
)


def upgrade() -> None:
    for table, column in COLUMNS:
        op.add_column(table, column)


def downgrade() -> None:
    for table, column in reversed(COLUMNS):
        op.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column.name}"))
