"""audit entity ids of 200 characters; hold records reference records

Revision ID: 4ea7dffbb502
Revises: df83fc2685c1
Create Date: 2026-11-29 06:31:07.999407+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4ea7dffbb502"
down_revision: str | None = "df83fc2685c1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column(
            "entity_id",
            existing_type=sa.VARCHAR(length=100),
            type_=sa.String(length=200),
            existing_nullable=False,
        )

    with op.batch_alter_table("legal_hold_records", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_legal_hold_records_record_id_records"), "records", ["record_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("legal_hold_records", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_legal_hold_records_record_id_records"), type_="foreignkey"
        )

    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column(
            "entity_id",
            existing_type=sa.String(length=200),
            type_=sa.VARCHAR(length=100),
            existing_nullable=False,
        )
