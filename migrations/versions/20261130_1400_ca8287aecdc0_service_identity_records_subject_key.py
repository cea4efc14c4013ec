"""service_identity: which subject key this database's identities are stored under

One row (id 1): the subject key's id and an HMAC fingerprint of the key (never the key). The
service writes it at its first start on this schema and refuses a different key afterwards.
A migration has no key, so the table starts empty.

Revision ID: ca8287aecdc0
Revises: c3d5e7f9a1b2
Create Date: 2026-11-30 14:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ca8287aecdc0"
down_revision: str | None = "c3d5e7f9a1b2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "service_identity",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("subject_key_id", sa.String(length=12), nullable=False),
        sa.Column("subject_key_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_service_identity_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_identity")),
    )


def downgrade() -> None:
    op.drop_table("service_identity")
