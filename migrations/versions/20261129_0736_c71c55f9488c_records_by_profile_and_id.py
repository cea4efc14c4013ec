"""records indexed by profile and id for keyset recompute

Revision ID: c71c55f9488c
Revises: c271ae9a63ab
Create Date: 2026-11-29 07:36:39.973746+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "c71c55f9488c"
down_revision: str | None = "c271ae9a63ab"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_records_profile_id"))
        batch_op.create_index("ix_records_profile_id_id", ["profile_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index("ix_records_profile_id_id")
        batch_op.create_index(batch_op.f("ix_records_profile_id"), ["profile_id"], unique=False)
