"""opendsr requests: the OpenDSR requests controllers file (their subject_request_id, the
subject request each became, its status callback URLs), and the outbox's target kind column
widened to hold `opendsr_callback` (the previous revision already admits it in the check)

Revision ID: e4a7c2d9b8f1
Revises: d1a7c3e5b9f2
Create Date: 2026-11-30 16:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e4a7c2d9b8f1"
down_revision: str | None = "d1a7c3e5b9f2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TARGET_KINDS = "target_kind IN ('system', 'controller', 'drp_agent', 'opendsr_callback')"


def _target_kinds(check: str, length: int, was: int) -> None:
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_outbox_events_target_kind"), type_="check")
        batch_op.alter_column(
            "target_kind",
            existing_type=sa.String(length=was),
            type_=sa.String(length=length),
            existing_nullable=False,
        )
        batch_op.create_check_constraint(batch_op.f("ck_outbox_events_target_kind"), check)


def upgrade() -> None:
    # 'opendsr_callback' is longer than the column's 12 characters.
    _target_kinds(TARGET_KINDS, 20, 12)
    op.create_table(
        "opendsr_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("controller_id", sa.Uuid(), nullable=False),
        sa.Column("subject_request_id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("status_callback_urls", sa.JSON(), nullable=False),
        sa.Column("api_version", sa.String(length=10), nullable=False),
        sa.Column("announced_status", sa.String(length=12), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["controller_id"],
            ["controllers.id"],
            name=op.f("fk_opendsr_requests_controller_id_controllers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["subject_requests.id"],
            name=op.f("fk_opendsr_requests_request_id_subject_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_opendsr_requests")),
        sa.UniqueConstraint(
            "controller_id",
            "subject_request_id",
            name=op.f("uq_opendsr_requests_controller_id_subject_request_id"),
        ),
        sa.UniqueConstraint("request_id", name=op.f("uq_opendsr_requests_request_id")),
    )


def downgrade() -> None:
    op.drop_table("opendsr_requests")
    op.execute(sa.text("DELETE FROM outbox_events WHERE target_kind = 'opendsr_callback'"))
    _target_kinds(TARGET_KINDS, 12, 20)
