"""erase tasks suspended by holds: a task status `suspended` and the records each task covers

A legal hold or a restriction placed after an erase task exists suspends the task; finding
the tasks a hold reaches needs the task's records as rows (task_records), filled here from
each task's record_ids.

Revision ID: 9f3a6c1e2b47
Revises: 5b1e0c7d9a24
Create Date: 2026-11-30 13:15:00+00:00
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9f3a6c1e2b47"
down_revision: str | None = "5b1e0c7d9a24"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 1000
WITH_SUSPENDED = "status IN ('pending', 'claimed', 'completed', 'failed', 'suspended')"
WITHOUT_SUSPENDED = "status IN ('pending', 'claimed', 'completed', 'failed')"

tasks = sa.table(
    "tasks",
    sa.column("id", sa.Uuid()),
    sa.column("status", sa.String()),
    sa.column("record_ids", sa.JSON()),
    sa.column("lease_expires_at", sa.DateTime(timezone=True)),
)
task_records = sa.table(
    "task_records", sa.column("task_id", sa.Uuid()), sa.column("record_id", sa.Uuid())
)


def upgrade() -> None:
    op.create_table(
        "task_records",
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"], ["records.id"], name=op.f("fk_task_records_record_id_records")
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_task_records_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", "record_id", name=op.f("pk_task_records")),
    )
    with op.batch_alter_table("task_records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_records_record_id"), ["record_id"], unique=False)
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_tasks_status"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_tasks_status"), WITH_SUSPENDED)

    bind = op.get_bind()
    last: uuid.UUID | None = None
    while True:
        statement = sa.select(tasks.c.id, tasks.c.record_ids).order_by(tasks.c.id).limit(CHUNK)
        if last is not None:
            statement = statement.where(tasks.c.id > last)
        rows = bind.execute(statement).all()
        if not rows:
            break
        links = {
            (task_id, uuid.UUID(str(record_id)))
            for task_id, record_ids in rows
            for record_id in record_ids or []
        }
        if links:
            bind.execute(
                task_records.insert(), [{"task_id": t, "record_id": r} for t, r in sorted(links)]
            )
        last = rows[-1].id


def downgrade() -> None:
    # The older schema knows no suspended task: it goes back to the queue.
    op.execute(
        tasks.update()
        .where(tasks.c.status == "suspended")
        .values(status="pending", lease_expires_at=None)
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_tasks_status"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_tasks_status"), WITHOUT_SUSPENDED)
    with op.batch_alter_table("task_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_records_record_id"))
    op.drop_table("task_records")
