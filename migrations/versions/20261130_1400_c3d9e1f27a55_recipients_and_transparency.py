"""recipients registry; controller and DPO contacts, security and automated-decision
statements; data subject categories per purpose; categories the subject provides

Revision ID: c3d9e1f27a55
Revises: c4e8a1f2d937
Create Date: 2026-11-30 14:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c3d9e1f27a55"
down_revision: str | None = "c4e8a1f2d937"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CONTROLLER_TEXTS = ("contact", "dpo_contact", "security_measures", "automated_decision_making")


def upgrade() -> None:
    op.create_table(
        "recipients",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("transfer_safeguard", sa.String(length=20), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("systems", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "role IN ('processor', 'sub_processor', 'third_party', 'controller')",
            name=op.f("ck_recipients_role"),
        ),
        sa.CheckConstraint(
            "transfer_safeguard IN ('not_applicable', 'adequacy', 'scc', 'bcr', 'derogation', "
            "'none')",
            name=op.f("ck_recipients_transfer_safeguard"),
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_recipients")),
    )
    # Plain ALTER TABLE (SQLite has it): a batch copy would drop tables others reference.
    for name in _CONTROLLER_TEXTS:
        op.add_column("controllers", sa.Column(name, sa.Text(), nullable=True))
    op.add_column(
        "purposes",
        sa.Column("data_subject_categories", sa.JSON(), nullable=False, server_default="[]"),
    )
    op.add_column(
        "data_categories",
        sa.Column("subject_provided", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("data_categories", "subject_provided")
    op.drop_column("purposes", "data_subject_categories")
    for name in reversed(_CONTROLLER_TEXTS):
        op.drop_column("controllers", name)
    op.drop_table("recipients")
