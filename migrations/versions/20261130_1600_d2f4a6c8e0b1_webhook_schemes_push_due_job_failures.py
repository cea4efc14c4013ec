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
    # Plain ADD COLUMN (no table rebuild on SQLite: other tables' keys point at these). The
    # scheme's values are checked by the API, as `v1` or `v1a`.
    op.add_column(
        "systems",
        sa.Column(
            "webhook_signature_scheme", sa.String(length=4), server_default="v1", nullable=False
        ),
    )
    op.add_column(
        "systems",
        sa.Column("push_records_due", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column(
        "controllers",
        sa.Column(
            "webhook_signature_scheme", sa.String(length=4), server_default="v1", nullable=False
        ),
    )
    op.add_column("jobs", sa.Column("failures", sa.Integer(), server_default="0", nullable=False))
    op.create_index("ix_erasure_memory_expires_at", "erasure_memory", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_erasure_memory_expires_at", table_name="erasure_memory")
    op.drop_column("jobs", "failures")
    op.drop_column("controllers", "webhook_signature_scheme")
    op.drop_column("systems", "push_records_due")
    op.drop_column("systems", "webhook_signature_scheme")
