"""Data Rights Protocol: registered agents, the DRP requests they filed, and status callbacks
to agents through the outbox

- drp_agents: an agent's DRP id, Ed25519 verify key, whether it takes callbacks, its status,
  and the hash of its pair-wise bearer token;
- drp_requests: one exercise of a right by an agent (its `request_id` is the subject request's
  id, or its own when refused at the door), with the agent's callback URL;
- outbox_events.target_kind also takes `drp_agent` and `opendsr_callback`.

Revision ID: d1a7c3e5b9f2
Revises: d2f4a6c8e0b1
Create Date: 2026-11-30 15:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d1a7c3e5b9f2"
down_revision: str | None = "d2f4a6c8e0b1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WIDE = "target_kind IN ('system', 'controller', 'drp_agent', 'opendsr_callback')"
NARROW = "target_kind IN ('system', 'controller')"


def _target_kinds(check: str) -> None:
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_outbox_events_target_kind"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_outbox_events_target_kind"), check)


def upgrade() -> None:
    op.create_table(
        "drp_agents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("verify_key", sa.String(length=64), nullable=False),
        sa.Column("callback_allowed", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("token_issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint("status IN ('active', 'suspended')", name=op.f("ck_drp_agents_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drp_agents")),
        sa.UniqueConstraint("agent_id", name=op.f("uq_drp_agents_agent_id")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_drp_agents_token_hash")),
    )
    op.create_table(
        "drp_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agent_pk", sa.Uuid(), nullable=False),
        sa.Column("subject_request_id", sa.Uuid(), nullable=True),
        sa.Column("agent_request_id", sa.String(length=200), nullable=True),
        sa.Column("exercise", sa.String(length=30), nullable=False),
        sa.Column("regime", sa.String(length=20), nullable=False),
        sa.Column("status_callback", sa.Text(), nullable=True),
        sa.Column("message_digest", sa.String(length=64), nullable=False),
        sa.Column("refused_reason", sa.String(length=30), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "refused_reason IS NULL OR subject_request_id IS NULL",
            name=op.f("ck_drp_requests_refused_unfiled"),
        ),
        sa.ForeignKeyConstraint(
            ["agent_pk"], ["drp_agents.id"], name=op.f("fk_drp_requests_agent_pk_drp_agents")
        ),
        sa.ForeignKeyConstraint(
            ["subject_request_id"],
            ["subject_requests.id"],
            name=op.f("fk_drp_requests_subject_request_id_subject_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drp_requests")),
        sa.UniqueConstraint("message_digest", name=op.f("uq_drp_requests_message_digest")),
        sa.UniqueConstraint("subject_request_id", name=op.f("uq_drp_requests_subject_request_id")),
    )
    with op.batch_alter_table("drp_requests", schema=None) as batch_op:
        batch_op.create_index("ix_drp_requests_agent", ["agent_pk", "agent_request_id"])
    _target_kinds(WIDE)


def downgrade() -> None:
    # Events for receivers the narrower set does not name go with the tables they point at.
    op.execute(
        sa.text("DELETE FROM outbox_events WHERE target_kind NOT IN ('system', 'controller')")
    )
    _target_kinds(NARROW)
    with op.batch_alter_table("drp_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_drp_requests_agent")
    op.drop_table("drp_requests")
    op.drop_table("drp_agents")
