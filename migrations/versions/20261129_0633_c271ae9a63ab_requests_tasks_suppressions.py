"""subject requests, scopes, tasks, suppressions

Revision ID: c271ae9a63ab
Revises: 4ea7dffbb502
Create Date: 2026-11-29 06:33:43.173264+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c271ae9a63ab"
down_revision: str | None = "4ea7dffbb502"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "subject_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("regime", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("filed_by_controller_id", sa.Uuid(), nullable=True),
        sa.Column("filed_by_key_id", sa.Uuid(), nullable=True),
        sa.Column("requester_kind", sa.String(length=20), nullable=False),
        sa.Column("contact_sealed", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledge_by", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("extended_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("extension_reason", sa.Text(), nullable=True),
        sa.Column("verification_method", sa.String(length=20), nullable=True),
        sa.Column("verification_code_hash", sa.String(length=64), nullable=True),
        sa.Column("verification_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verification_attempts", sa.Integer(), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verification_note", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.JSON(), nullable=True),
        sa.Column("denial_reason", sa.String(length=30), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("purge_contact_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending_verification', 'in_progress', 'completed', 'denied', 'cancelled')",
            name=op.f("ck_subject_requests_status"),
        ),
        sa.ForeignKeyConstraint(
            ["filed_by_controller_id"],
            ["controllers.id"],
            name=op.f("fk_subject_requests_filed_by_controller_id_controllers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subject_requests")),
    )
    with op.batch_alter_table("subject_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_subject_requests_filed_by_controller_id"),
            ["filed_by_controller_id"],
            unique=False,
        )
        batch_op.create_index("ix_subject_requests_open_due", ["status", "due_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_subject_requests_purge_contact_after"),
            ["purge_contact_after"],
            unique=False,
        )

    op.create_table(
        "request_identities",
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("identity_type", sa.String(length=20), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["subject_requests.id"],
            name=op.f("fk_request_identities_request_id_subject_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "request_id", "identity_type", "digest", name=op.f("pk_request_identities")
        ),
    )
    op.create_table(
        "request_scopes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("controller_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by_key_id", sa.Uuid(), nullable=True),
        sa.Column("outcome", sa.JSON(), nullable=True),
        sa.CheckConstraint(
            "status IN ('awaiting_controller', 'in_progress', 'completed', 'declined', 'handled_by_controller', 'failed')",
            name=op.f("ck_request_scopes_status"),
        ),
        sa.ForeignKeyConstraint(
            ["controller_id"],
            ["controllers.id"],
            name=op.f("fk_request_scopes_controller_id_controllers"),
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["subject_requests.id"],
            name=op.f("fk_request_scopes_request_id_subject_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_scopes")),
        sa.UniqueConstraint(
            "request_id", "controller_id", name=op.f("uq_request_scopes_request_id_controller_id")
        ),
    )
    with op.batch_alter_table("request_scopes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_request_scopes_controller_id"), ["controller_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_request_scopes_request_id"), ["request_id"], unique=False
        )

    op.create_table(
        "suppressions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("identity_type", sa.String(length=20), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("purpose", sa.String(length=200), nullable=False),
        sa.Column("controller_id", sa.Uuid(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=True),
        sa.Column("created_by_key_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "channel IN ('email', 'sms', 'voice', 'all')", name=op.f("ck_suppressions_channel")
        ),
        sa.CheckConstraint(
            "source IN ('unsubscribe_link', 'sms_stop', 'request', 'gpc', 'manual')",
            name=op.f("ck_suppressions_source"),
        ),
        sa.ForeignKeyConstraint(
            ["controller_id"],
            ["controllers.id"],
            name=op.f("fk_suppressions_controller_id_controllers"),
        ),
        sa.ForeignKeyConstraint(
            ["purpose"], ["purposes.key"], name=op.f("fk_suppressions_purpose_purposes")
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["subject_requests.id"],
            name=op.f("fk_suppressions_request_id_subject_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
    )
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_suppressions_request_id"), ["request_id"], unique=False
        )
        batch_op.create_index(
            "uq_suppressions_identity_scope",
            ["digest", "controller_id", "purpose", "channel"],
            unique=True,
        )

    op.create_table(
        "request_scope_records",
        sa.Column("scope_id", sa.Uuid(), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"], ["records.id"], name=op.f("fk_request_scope_records_record_id_records")
        ),
        sa.ForeignKeyConstraint(
            ["scope_id"],
            ["request_scopes.id"],
            name=op.f("fk_request_scope_records_scope_id_request_scopes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("scope_id", "record_id", name=op.f("pk_request_scope_records")),
    )
    with op.batch_alter_table("request_scope_records", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_request_scope_records_record_id"), ["record_id"], unique=False
        )

    op.create_table(
        "tasks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("scope_id", sa.Uuid(), nullable=False),
        sa.Column("system", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=12), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("record_ids", sa.JSON(), nullable=False),
        sa.Column("record_refs", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by_key_id", sa.Uuid(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("retryable", sa.Boolean(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "action IN ('export', 'erase', 'rectify', 'restrict', 'unrestrict')",
            name=op.f("ck_tasks_action"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'claimed', 'completed', 'failed')", name=op.f("ck_tasks_status")
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["subject_requests.id"],
            name=op.f("fk_tasks_request_id_subject_requests"),
        ),
        sa.ForeignKeyConstraint(
            ["scope_id"], ["request_scopes.id"], name=op.f("fk_tasks_scope_id_request_scopes")
        ),
        sa.ForeignKeyConstraint(["system"], ["systems.key"], name=op.f("fk_tasks_system_systems")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tasks_claimable", ["system", "status", "lease_expires_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_tasks_request_id"), ["request_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_tasks_scope_id"), ["scope_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tasks_scope_id"))
        batch_op.drop_index(batch_op.f("ix_tasks_request_id"))
        batch_op.drop_index("ix_tasks_claimable")

    op.drop_table("tasks")
    with op.batch_alter_table("request_scope_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_request_scope_records_record_id"))

    op.drop_table("request_scope_records")
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.drop_index("uq_suppressions_identity_scope")
        batch_op.drop_index(batch_op.f("ix_suppressions_request_id"))

    op.drop_table("suppressions")
    with op.batch_alter_table("request_scopes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_request_scopes_request_id"))
        batch_op.drop_index(batch_op.f("ix_request_scopes_controller_id"))

    op.drop_table("request_scopes")
    op.drop_table("request_identities")
    with op.batch_alter_table("subject_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subject_requests_purge_contact_after"))
        batch_op.drop_index("ix_subject_requests_open_due")
        batch_op.drop_index(batch_op.f("ix_subject_requests_filed_by_controller_id"))

    op.drop_table("subject_requests")
