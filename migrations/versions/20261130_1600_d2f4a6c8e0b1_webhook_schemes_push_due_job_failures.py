"""webhook signature schemes, pushed due records, job failures: an endpoint (a system, a
controller routed by webhook) chooses the Standard Webhooks scheme that signs its deliveries
(`v1` HMAC or `v1a` Ed25519); a system may ask for `retention.records_due` pushes; a job counts
its failed chunks; expired erasure memory is found by its expiry

Revision ID: d2f4a6c8e0b1
Revises: b7d3e9a1c5f2
Create Date: 2026-11-30 16:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d2f4a6c8e0b1"
down_revision: str | None = "b7d3e9a1c5f2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("systems", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "webhook_signature_scheme", sa.String(length=4), server_default="v1", nullable=False
            )
        )
        batch_op.add_column(
            sa.Column("push_records_due", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.create_check_constraint(
            op.f("ck_systems_webhook_signature_scheme"),
            "webhook_signature_scheme IN ('v1', 'v1a')",
        )
    with op.batch_alter_table("controllers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "webhook_signature_scheme", sa.String(length=4), server_default="v1", nullable=False
            )
        )
        batch_op.create_check_constraint(
            op.f("ck_controllers_webhook_signature_scheme"),
            "webhook_signature_scheme IN ('v1', 'v1a')",
        )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failures", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("erasure_memory", schema=None) as batch_op:
        batch_op.create_index("ix_erasure_memory_expires_at", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("erasure_memory", schema=None) as batch_op:
        batch_op.drop_index("ix_erasure_memory_expires_at")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("failures")
    with op.batch_alter_table("controllers", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_controllers_webhook_signature_scheme"), type_="check")
        batch_op.drop_column("webhook_signature_scheme")
    with op.batch_alter_table("systems", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_systems_webhook_signature_scheme"), type_="check")
        batch_op.drop_column("push_records_due")
        batch_op.drop_column("webhook_signature_scheme")
