"""Typed builders for test data, written straight to the database (no HTTP)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.controllers.models import Controller
from app.core.db import Database, utcnow
from app.core.session import after_commit
from app.data_categories.models import DataCategory
from app.purposes.models import Purpose
from app.retention_rules.models import RetentionRule
from app.systems.models import System


async def commit_and_link(session: AsyncSession, database: Database) -> None:
    """Commit as a request does: the transaction, then the audit events it wrote linked."""
    await session.commit()
    await after_commit(session, database)


async def make_controller(
    session: AsyncSession, *, kind: str = "customer", name: str | None = None, **fields: Any
) -> Controller:
    controller = Controller(kind=kind, name=name or f"Customer {uuid.uuid4().hex[:6]}", **fields)
    session.add(controller)
    await session.commit()
    return controller


async def make_system(session: AsyncSession, key: str | None = None, **fields: Any) -> System:
    system = System(
        key=key or f"sys-{uuid.uuid4().hex[:8]}", name=fields.pop("name", "A system"), **fields
    )
    session.add(system)
    await session.commit()
    return system


async def make_category(
    session: AsyncSession, key: str, *, sensitivity: str = "medium", **fields: Any
) -> DataCategory:
    """Creates the missing ancestors too."""
    parts = key.split(".")
    category = None
    for depth in range(1, len(parts) + 1):
        current = ".".join(parts[:depth])
        category = await session.get(DataCategory, current)
        if category is None:
            category = DataCategory(
                key=current,
                parent_key=".".join(parts[: depth - 1]) or None,
                sensitivity=sensitivity,
                **({"name": current} | (fields if depth == len(parts) else {})),
            )
            session.add(category)
            await session.flush()
    await session.commit()
    assert category is not None
    return category


async def make_purpose(
    session: AsyncSession, key: str, *, legal_basis: str = "contract", **fields: Any
) -> Purpose:
    purpose = Purpose(key=key, name=fields.pop("name", key), legal_basis=legal_basis, **fields)
    session.add(purpose)
    await session.commit()
    return purpose


async def make_rule(
    session: AsyncSession,
    *,
    kind: str = "maximum",
    period: str = "P1Y",
    anchor: str = "collected_at",
    source: str = "platform_default",
    **fields: Any,
) -> RetentionRule:
    rule = RetentionRule(
        name=fields.pop("name", f"rule {uuid.uuid4().hex[:6]}"),
        kind=kind,
        period=period,
        anchor=anchor,
        source=source,
        action=fields.pop("action", "delete"),
        **fields,
    )
    session.add(rule)
    await session.commit()
    return rule


TEST_SUBJECT_KEY = "test-subject-key-" + "0" * 32
TEST_AUDIT_KEY = "test-audit-key-" + "0" * 32


def audit_row(seq: int | None = None, **fields: Any) -> dict[str, Any]:
    """An audit event's columns, for a test that writes the table itself."""
    return {
        "id": uuid.uuid4(),
        "seq": seq,
        "occurred_at": utcnow(),
        "event_type": "probe.old",
        "actor_key_id": None,
        "actor_role": "operator",
        "entity_type": "probe",
        "entity_id": str(seq),
        "subject_request_id": None,
        "details": {},
    } | fields


def chained_rows(
    count: int, link: Callable[[str, dict[str, Any]], str]
) -> tuple[list[dict[str, Any]], str]:
    """Events 1..count linked as an older version of the service wrote them (`link(previous
    hash, row)`), and the last hash."""
    prev_hash, rows = "0" * 64, []
    for seq in range(1, count + 1):
        row = audit_row(seq, prev_hash=prev_hash, details={"seq": seq})
        row["hash"] = prev_hash = link(prev_hash, row)
        rows.append(row)
    return rows, prev_hash


async def make_record(
    session: AsyncSession,
    *,
    system: str,
    controller_id: uuid.UUID,
    categories: list[str],
    identities: list[dict[str, str]] | None = None,
    record_ref: str | None = None,
    collected_at: str = "2026-01-01T00:00:00Z",
    **fields: Any,
) -> uuid.UUID:
    """Registers through the inventory service, so identities are hashed as the app does."""
    from app.core.identity import BlindIndexer
    from app.records.importer import OPERATOR_PRINCIPAL
    from app.records.register import register

    (outcome,) = await register(
        session,
        OPERATOR_PRINCIPAL,
        BlindIndexer(TEST_SUBJECT_KEY.encode(), "k1"),
        [
            {
                "system": system,
                "record_ref": record_ref or f"ref-{uuid.uuid4().hex[:12]}",
                "controller_id": str(controller_id),
                "identities": identities or [],
                "categories": categories,
                "collected_at": collected_at,
                **fields,
            }
        ],
    )
    assert outcome.record_id is not None, outcome.problem and outcome.problem.error
    await session.commit()
    return outcome.record_id


# For migration tests: rows written at an older revision, whose tables lack the models'
# later columns.


async def insert_at_revision(session: Any, model: Any, **values: Any) -> dict[str, Any]:
    """A row written with only the columns the database has at an older revision (the
    models carry later ones), filling the models' Python defaults; committed."""
    table = model.__table__

    def columns(sync_session: Any) -> set[str]:
        inspector = sa.inspect(sync_session.connection())
        return {c["name"] for c in inspector.get_columns(table.name)}

    present = await session.run_sync(columns)
    row: dict[str, Any] = {}
    for column in table.columns:
        if column.name not in present:
            continue
        if column.name in values:
            row[column.name] = values[column.name]
        elif column.default is not None:
            arg = column.default.arg
            row[column.name] = arg(None) if callable(arg) else arg
    # A bare table: the model's would add its later columns' defaults to the INSERT.
    bare = sa.table(table.name, *(sa.column(name, table.c[name].type) for name in row))
    await session.execute(bare.insert().values(row))
    await session.commit()
    return row


async def make_controller_at_revision(session: Any, **values: Any) -> uuid.UUID:
    row = await insert_at_revision(
        session, Controller, **{"id": uuid.uuid4(), "kind": "customer", **values}
    )
    return uuid.UUID(str(row["id"]))


async def make_system_at_revision(session: Any, key: str) -> None:
    await insert_at_revision(session, System, key=key, name=key)


async def make_category_at_revision(session: Any, key: str) -> None:
    parts = key.split(".")
    for depth in range(1, len(parts) + 1):
        current = ".".join(parts[:depth])
        exists = await session.scalar(
            sa.select(DataCategory.__table__.c.key).where(DataCategory.__table__.c.key == current)
        )
        if exists is None:
            parent = ".".join(parts[: depth - 1]) or None
            await insert_at_revision(
                session, DataCategory, key=current, parent_key=parent, name=current
            )


async def make_purpose_at_revision(session: Any, key: str) -> None:
    await insert_at_revision(session, Purpose, key=key, name=key, legal_basis="contract")


async def insert_controller(session: AsyncSession, *, kind: str = "customer", name: str) -> Any:
    """A controller written with the columns every revision has, for tests that start from an
    older schema: the ORM model may carry newer columns than that schema. Only `.id` is set."""
    import types
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from app.core.db import UTCDateTime

    table = sa.table(
        "controllers",
        *(sa.column(n) for n in ("kind", "name", "dsr_routing_mode", "auto_execute", "version")),
        sa.column("id", sa.Uuid()),
        *(sa.column(n, UTCDateTime()) for n in ("created_at", "updated_at")),
    )
    now = datetime.now(UTC)
    row_id = uuid.uuid4()
    await session.execute(
        sa.insert(table).values(
            id=row_id,
            kind=kind,
            name=name,
            dsr_routing_mode="dashboard",
            auto_execute=False,
            version=1,
            created_at=now,
            updated_at=now,
        )
    )
    await session.commit()
    return types.SimpleNamespace(id=row_id)
