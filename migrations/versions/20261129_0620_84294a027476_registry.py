"""registry: controllers, systems, categories, purposes, retention rules, legal holds

Revision ID: 84294a027476
Revises: 2de272cd5ac1
Create Date: 2026-11-29 06:20:23.746877+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "84294a027476"
down_revision: str | None = "2de272cd5ac1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "controllers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("external_ref", sa.String(length=200), nullable=True),
        sa.Column("agreement_ref", sa.String(length=200), nullable=True),
        sa.Column("effective_from", sa.Date(), nullable=True),
        sa.Column("effective_until", sa.Date(), nullable=True),
        sa.Column("dsr_routing_mode", sa.String(length=20), nullable=False),
        sa.Column("webhook_url", sa.String(length=2000), nullable=True),
        sa.Column("webhook_secret_sealed", sa.Text(), nullable=True),
        sa.Column("auto_execute", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "dsr_routing_mode = 'dashboard' OR webhook_url IS NOT NULL",
            name=op.f("ck_controllers_webhook_has_url"),
        ),
        sa.CheckConstraint(
            "dsr_routing_mode IN ('webhook', 'dashboard')", name=op.f("ck_controllers_routing_mode")
        ),
        sa.CheckConstraint("kind IN ('platform', 'customer')", name=op.f("ck_controllers_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_controllers")),
        sa.UniqueConstraint("external_ref", name=op.f("uq_controllers_external_ref")),
    )
    with op.batch_alter_table("controllers", schema=None) as batch_op:
        batch_op.create_index(
            "uq_controllers_one_platform",
            ["kind"],
            unique=True,
            sqlite_where=sa.text("kind = 'platform'"),
            postgresql_where=sa.text("kind = 'platform'"),
        )

    op.create_table(
        "data_categories",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("parent_key", sa.String(length=200), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("sensitivity", sa.String(length=10), nullable=False),
        sa.Column("fideslang", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "sensitivity IN ('low', 'medium', 'high')", name=op.f("ck_data_categories_sensitivity")
        ),
        sa.ForeignKeyConstraint(
            ["parent_key"],
            ["data_categories.key"],
            name=op.f("fk_data_categories_parent_key_data_categories"),
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_data_categories")),
    )
    with op.batch_alter_table("data_categories", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_data_categories_parent_key"), ["parent_key"], unique=False
        )

    op.create_table(
        "purposes",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("legal_basis", sa.String(length=30), nullable=False),
        sa.Column("objection_absolute", sa.Boolean(), nullable=False),
        sa.Column("fideslang", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "legal_basis IN ('contract', 'legitimate_interest', 'consent', 'legal_obligation', 'vital_interest', 'public_task')",
            name=op.f("ck_purposes_legal_basis"),
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_purposes")),
    )
    op.create_table(
        "systems",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("webhook_url", sa.String(length=2000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_systems")),
    )
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("controller_id", sa.Uuid(), nullable=True),
        sa.Column("system", sa.String(length=100), nullable=True),
        sa.Column("category", sa.String(length=200), nullable=True),
        sa.Column("placed_by_key_id", sa.Uuid(), nullable=True),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_by_key_id", sa.Uuid(), nullable=True),
        sa.Column("release_note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["category"],
            ["data_categories.key"],
            name=op.f("fk_legal_holds_category_data_categories"),
        ),
        sa.ForeignKeyConstraint(
            ["controller_id"],
            ["controllers.id"],
            name=op.f("fk_legal_holds_controller_id_controllers"),
        ),
        sa.ForeignKeyConstraint(
            ["system"], ["systems.key"], name=op.f("fk_legal_holds_system_systems")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
    )
    with op.batch_alter_table("legal_holds", schema=None) as batch_op:
        batch_op.create_index("ix_legal_holds_active", ["released_at"], unique=False)

    op.create_table(
        "retention_rules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("period", sa.String(length=40), nullable=False),
        sa.Column("anchor", sa.String(length=120), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("citation", sa.Text(), nullable=True),
        sa.Column("category", sa.String(length=200), nullable=True),
        sa.Column("purpose", sa.String(length=200), nullable=True),
        sa.Column("controller_id", sa.Uuid(), nullable=True),
        sa.Column("system", sa.String(length=100), nullable=True),
        sa.Column("region", sa.String(length=50), nullable=True),
        sa.Column("default_to_review", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "action IN ('delete', 'anonymize')", name=op.f("ck_retention_rules_action")
        ),
        sa.CheckConstraint("kind IN ('minimum', 'maximum')", name=op.f("ck_retention_rules_kind")),
        sa.CheckConstraint(
            "source IN ('law', 'contract', 'platform_default', 'customer_setting')",
            name=op.f("ck_retention_rules_source"),
        ),
        sa.ForeignKeyConstraint(
            ["category"],
            ["data_categories.key"],
            name=op.f("fk_retention_rules_category_data_categories"),
        ),
        sa.ForeignKeyConstraint(
            ["controller_id"],
            ["controllers.id"],
            name=op.f("fk_retention_rules_controller_id_controllers"),
        ),
        sa.ForeignKeyConstraint(
            ["purpose"], ["purposes.key"], name=op.f("fk_retention_rules_purpose_purposes")
        ),
        sa.ForeignKeyConstraint(
            ["system"], ["systems.key"], name=op.f("fk_retention_rules_system_systems")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_rules")),
        sa.UniqueConstraint("key", name=op.f("uq_retention_rules_key")),
    )
    with op.batch_alter_table("retention_rules", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_retention_rules_category"), ["category"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_retention_rules_controller_id"), ["controller_id"], unique=False
        )

    op.create_table(
        "legal_hold_identities",
        sa.Column("hold_id", sa.Uuid(), nullable=False),
        sa.Column("identity_type", sa.String(length=20), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["hold_id"],
            ["legal_holds.id"],
            name=op.f("fk_legal_hold_identities_hold_id_legal_holds"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "hold_id", "identity_type", "digest", name=op.f("pk_legal_hold_identities")
        ),
    )
    with op.batch_alter_table("legal_hold_identities", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_legal_hold_identities_digest"), ["digest"], unique=False
        )

    op.create_table(
        "legal_hold_records",
        sa.Column("hold_id", sa.Uuid(), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["hold_id"],
            ["legal_holds.id"],
            name=op.f("fk_legal_hold_records_hold_id_legal_holds"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("hold_id", "record_id", name=op.f("pk_legal_hold_records")),
    )
    with op.batch_alter_table("legal_hold_records", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_legal_hold_records_record_id"), ["record_id"], unique=False
        )

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_api_keys_system_key_systems"), "systems", ["system_key"], ["key"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_api_keys_controller_id_controllers"),
            "controllers",
            ["controller_id"],
            ["id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_api_keys_controller_id_controllers"), type_="foreignkey"
        )
        batch_op.drop_constraint(batch_op.f("fk_api_keys_system_key_systems"), type_="foreignkey")

    with op.batch_alter_table("legal_hold_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_legal_hold_records_record_id"))

    op.drop_table("legal_hold_records")
    with op.batch_alter_table("legal_hold_identities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_legal_hold_identities_digest"))

    op.drop_table("legal_hold_identities")
    with op.batch_alter_table("retention_rules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_retention_rules_controller_id"))
        batch_op.drop_index(batch_op.f("ix_retention_rules_category"))

    op.drop_table("retention_rules")
    with op.batch_alter_table("legal_holds", schema=None) as batch_op:
        batch_op.drop_index("ix_legal_holds_active")

    op.drop_table("legal_holds")
    op.drop_table("systems")
    op.drop_table("purposes")
    with op.batch_alter_table("data_categories", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_data_categories_parent_key"))

    op.drop_table("data_categories")
    with op.batch_alter_table("controllers", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_controllers_one_platform",
            sqlite_where=sa.text("kind = 'platform'"),
            postgresql_where=sa.text("kind = 'platform'"),
        )

    op.drop_table("controllers")
