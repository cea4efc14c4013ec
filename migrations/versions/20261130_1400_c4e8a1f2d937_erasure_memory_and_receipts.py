"""erasure memory and receipts: remembered erasures (blind indexes only), reappeared records
flagged for review, and each completed erasure's receipt

Revision ID: c4e8a1f2d937
Revises: a285b60b7f26
Create Date: 2026-11-30 14:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c4e8a1f2d937"
down_revision: str | None = "a285b60b7f26"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erasure_memory",
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("controller_id", sa.Uuid(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["controller_id"],
            ["controllers.id"],
            name=op.f("fk_erasure_memory_controller_id_controllers"),
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["subject_requests.id"],
            name=op.f("fk_erasure_memory_request_id_subject_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "request_id", "controller_id", "digest", name=op.f("pk_erasure_memory")
        ),
    )
    with op.batch_alter_table("erasure_memory", schema=None) as batch_op:
        batch_op.create_index("ix_erasure_memory_digest", ["digest", "expires_at"], unique=False)

    op.create_table(
        "reappeared_records",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("controller_id", sa.Uuid(), nullable=False),
        sa.Column("system", sa.String(length=100), nullable=False),
        sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reviewed_by_key_id", sa.Uuid(), nullable=True),
        sa.Column("review_note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["controller_id"],
            ["controllers.id"],
            name=op.f("fk_reappeared_records_controller_id_controllers"),
        ),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["records.id"],
            name=op.f("fk_reappeared_records_record_id_records"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["subject_requests.id"],
            name=op.f("fk_reappeared_records_request_id_subject_requests"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["system"], ["systems.key"], name=op.f("fk_reappeared_records_system_systems")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reappeared_records")),
        sa.UniqueConstraint(
            "record_id", "request_id", name=op.f("uq_reappeared_records_record_id_request_id")
        ),
    )
    with op.batch_alter_table("reappeared_records", schema=None) as batch_op:
        for column in ("controller_id", "record_id", "request_id"):
            batch_op.create_index(
                batch_op.f(f"ix_reappeared_records_{column}"), [column], unique=False
            )

    op.create_table(
        "erasure_receipts",
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["subject_requests.id"],
            name=op.f("fk_erasure_receipts_request_id_subject_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_erasure_receipts")),
    )


def downgrade() -> None:
    op.drop_table("erasure_receipts")
    with op.batch_alter_table("reappeared_records", schema=None) as batch_op:
        for column in ("request_id", "record_id", "controller_id"):
            batch_op.drop_index(batch_op.f(f"ix_reappeared_records_{column}"))
    op.drop_table("reappeared_records")
    with op.batch_alter_table("erasure_memory", schema=None) as batch_op:
        batch_op.drop_index("ix_erasure_memory_digest")
    op.drop_table("erasure_memory")
