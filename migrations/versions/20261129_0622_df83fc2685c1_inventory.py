"""inventory: records, profiles, identities

Revision ID: df83fc2685c1
Revises: 84294a027476
Create Date: 2026-11-29 06:22:40.856101+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "df83fc2685c1"
down_revision: str | None = "84294a027476"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "record_profiles",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("controller_id", sa.Uuid(), nullable=False),
        sa.Column("system", sa.String(length=100), nullable=False),
        sa.Column("region", sa.String(length=50), nullable=True),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("purposes", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["controller_id"],
            ["controllers.id"],
            name=op.f("fk_record_profiles_controller_id_controllers"),
        ),
        sa.ForeignKeyConstraint(
            ["system"], ["systems.key"], name=op.f("fk_record_profiles_system_systems")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_record_profiles")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_record_profiles_fingerprint")),
    )
    with op.batch_alter_table("record_profiles", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_record_profiles_controller_id"), ["controller_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_record_profiles_system"), ["system"], unique=False)

    op.create_table(
        "record_profile_categories",
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("category", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["category"],
            ["data_categories.key"],
            name=op.f("fk_record_profile_categories_category_data_categories"),
        ),
        sa.ForeignKeyConstraint(
            ["profile_id"],
            ["record_profiles.id"],
            name=op.f("fk_record_profile_categories_profile_id_record_profiles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "profile_id", "category", name=op.f("pk_record_profile_categories")
        ),
    )
    with op.batch_alter_table("record_profile_categories", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_record_profile_categories_category"), ["category"], unique=False
        )

    op.create_table(
        "record_profile_purposes",
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("purpose", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["profile_id"],
            ["record_profiles.id"],
            name=op.f("fk_record_profile_purposes_profile_id_record_profiles"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["purpose"], ["purposes.key"], name=op.f("fk_record_profile_purposes_purpose_purposes")
        ),
        sa.PrimaryKeyConstraint("profile_id", "purpose", name=op.f("pk_record_profile_purposes")),
    )
    with op.batch_alter_table("record_profile_purposes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_record_profile_purposes_purpose"), ["purpose"], unique=False
        )

    op.create_table(
        "records",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("system", sa.String(length=100), nullable=False),
        sa.Column("record_ref", sa.String(length=500), nullable=False),
        sa.Column("controller_id", sa.Uuid(), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("collected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("held", sa.Boolean(), nullable=False),
        sa.Column("keep_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("keep_indefinitely", sa.Boolean(), nullable=False),
        sa.Column("delete_by", sa.DateTime(timezone=True), nullable=True),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("retention", sa.JSON(), nullable=False),
        sa.CheckConstraint(
            "state IN ('active', 'restricted', 'erased')", name=op.f("ck_records_state")
        ),
        sa.ForeignKeyConstraint(
            ["controller_id"], ["controllers.id"], name=op.f("fk_records_controller_id_controllers")
        ),
        sa.ForeignKeyConstraint(
            ["profile_id"],
            ["record_profiles.id"],
            name=op.f("fk_records_profile_id_record_profiles"),
        ),
        sa.ForeignKeyConstraint(
            ["system"], ["systems.key"], name=op.f("fk_records_system_systems")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_records")),
        sa.UniqueConstraint("system", "record_ref", name=op.f("uq_records_system_record_ref")),
    )
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_records_controller_id"), ["controller_id"], unique=False
        )
        batch_op.create_index(
            "ix_records_due",
            ["system", "delete_by", "id"],
            unique=False,
            sqlite_where=sa.text("state = 'active' AND NOT held AND delete_by IS NOT NULL"),
            postgresql_where=sa.text("state = 'active' AND NOT held AND delete_by IS NOT NULL"),
        )
        batch_op.create_index(batch_op.f("ix_records_profile_id"), ["profile_id"], unique=False)

    op.create_table(
        "record_identities",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("identity_type", sa.String(length=20), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["records.id"],
            name=op.f("fk_record_identities_record_id_records"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "record_id", "identity_type", "digest", name=op.f("pk_record_identities")
        ),
    )
    with op.batch_alter_table("record_identities", schema=None) as batch_op:
        batch_op.create_index("ix_record_identities_digest", ["digest", "record_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("record_identities", schema=None) as batch_op:
        batch_op.drop_index("ix_record_identities_digest")

    op.drop_table("record_identities")
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_records_profile_id"))
        batch_op.drop_index(
            "ix_records_due",
            sqlite_where=sa.text("state = 'active' AND NOT held AND delete_by IS NOT NULL"),
            postgresql_where=sa.text("state = 'active' AND NOT held AND delete_by IS NOT NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_records_controller_id"))

    op.drop_table("records")
    with op.batch_alter_table("record_profile_purposes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_record_profile_purposes_purpose"))

    op.drop_table("record_profile_purposes")
    with op.batch_alter_table("record_profile_categories", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_record_profile_categories_category"))

    op.drop_table("record_profile_categories")
    with op.batch_alter_table("record_profiles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_record_profiles_system"))
        batch_op.drop_index(batch_op.f("ix_record_profiles_controller_id"))

    op.drop_table("record_profiles")
