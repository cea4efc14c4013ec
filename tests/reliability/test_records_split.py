"""Records after the split: the services emit the audit events the routers and the importer
emitted before (same names, contents and order), PATCH checks its references with the plain
check, and the seams stay where they were put (routers emit nothing, retention reads only
records' tables)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.core.db import Database, any_of, join_any_of
from app.core.identity import BlindIndexer
from app.records import importer
from app.records.importer import ImportReport
from app.records.models import Record
from tests.builders import (
    TEST_SUBJECT_KEY,
    make_category,
    make_controller,
    make_purpose,
    make_system,
)

APP = Path(__file__).resolve().parents[2] / "app"
RECORD_EVENTS = (
    "record.created",
    "record.updated",
    "records.registered",
    "records.erased",
    "records.imported",
)


@pytest.fixture
async def world(session: AsyncSession) -> dict[str, Any]:
    acme = await make_controller(session, name="Acme")
    await make_system(session, "voice-recordings")
    await make_category(session, "communications.recording")
    await make_purpose(session, "service.provide")
    return {"acme": acme}


def _record(world: dict[str, Any], ref: str, **overrides: Any) -> dict[str, Any]:
    return {
        "system": "voice-recordings",
        "record_ref": ref,
        "controller_id": str(world["acme"].id),
        "identities": [{"type": "email", "value": "alice@example.com"}],
        "categories": ["communications.recording"],
        "purposes": ["service.provide"],
        "collected_at": "2026-11-01T10:00:00Z",
        **overrides,
    }


async def _record_events(session: AsyncSession) -> list[tuple[Any, ...]]:
    rows = await session.execute(
        select(
            AuditEvent.event_type,
            AuditEvent.actor_role,
            AuditEvent.entity_type,
            AuditEvent.entity_id,
            AuditEvent.details,
        )
        .where(AuditEvent.event_type.in_(RECORD_EVENTS))
        .order_by(AuditEvent.seq)
    )
    return [tuple(row) for row in rows]


async def test_record_writes_are_audited_as_before(
    client: AsyncClient, admin: dict[str, str], session: AsyncSession, world: dict[str, Any]
) -> None:
    one = await client.post("/v1/records", json=_record(world, "r-1"), headers=admin)
    assert one.status_code == 201, one.text
    again = await client.post("/v1/records", json=_record(world, "r-1"), headers=admin)
    assert again.status_code == 200, again.text
    rid = one.json()["id"]

    batch = await client.post(
        "/v1/records/batch",
        json={
            "records": [
                _record(world, "r-2"),
                _record(world, "r-1"),
                _record(world, "r-3", categories=["no.such"]),
            ]
        },
        headers=admin,
    )
    assert batch.status_code == 200, batch.text
    new_id = batch.json()["results"][0]["id"]
    # A batch that writes nothing is not audited.
    nothing = await client.post(
        "/v1/records/batch",
        json={"records": [_record(world, "r-4", categories=["no.such"])]},
        headers=admin,
    )
    assert nothing.json()["results"][0]["status"] == "error"

    patch = await client.patch(
        f"/v1/records/{rid}",
        json={"last_activity_at": "2026-11-02T00:00:00Z", "purposes": []},
        headers=admin,
    )
    assert patch.status_code == 200, patch.text

    erased = await client.post(
        "/v1/records/erased",
        json={"system": "voice-recordings", "record_refs": ["r-2", "r-9"]},
        headers=admin,
    )
    assert erased.json() == {"erased": 1}
    # Nothing left to erase: no event.
    again_erased = await client.post(
        "/v1/records/erased",
        json={"system": "voice-recordings", "record_refs": ["r-2"]},
        headers=admin,
    )
    assert again_erased.json() == {"erased": 0}

    assert await _record_events(session) == [
        ("record.created", "admin", "record", rid, {"system": "voice-recordings"}),
        ("record.updated", "admin", "record", rid, {"system": "voice-recordings"}),
        (
            "records.registered",
            "admin",
            "record_batch",
            new_id,
            {"created": [new_id], "updated": [rid], "errors": 1},
        ),
        ("record.updated", "admin", "record", rid, {"fields": ["last_activity_at", "purposes"]}),
        (
            "records.erased",
            "admin",
            "record_batch",
            new_id,
            {"system": "voice-recordings", "records": [new_id]},
        ),
    ]


@pytest.mark.parametrize(
    ("change", "loc", "detail"),
    [
        (
            {"categories": ["communications.recording", "no.such"]},
            ["body", "categories", 1],
            "No category 'no.such'",
        ),
        ({"purposes": ["service.provide", "nope"]}, ["body", "purposes", 1], "No purpose 'nope'"),
    ],
)
async def test_patch_names_the_unknown_reference(
    client: AsyncClient,
    admin: dict[str, str],
    session: AsyncSession,
    world: dict[str, Any],
    change: dict[str, Any],
    loc: list[Any],
    detail: str,
) -> None:
    created = (await client.post("/v1/records", json=_record(world, "r-1"), headers=admin)).json()
    response = await client.patch(f"/v1/records/{created['id']}", json=change, headers=admin)
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == detail
    assert [e["loc"] for e in response.json()["errors"]] == [loc]
    # Refused whole: no change, no event.
    after = (await client.get(f"/v1/records/{created['id']}", headers=admin)).json()
    assert after == created
    assert [e[0] for e in await _record_events(session)] == ["record.created"]


async def test_import_is_audited_by_the_operator(
    database: Database, session: AsyncSession, world: dict[str, Any]
) -> None:
    batch = [
        (1, _record(world, "imp-1")),
        (2, _record(world, "imp-2", purposes=["nope"])),
        (3, _record(world, "imp-3")),
    ]
    report = ImportReport()
    indexer = BlindIndexer(TEST_SUBJECT_KEY.encode(), "k1")
    await importer._import_batch(database, indexer, "records.jsonl", batch, report)
    assert (report.created, report.failed) == (2, 1)
    ((event_type, role, entity_type, entity_id, details),) = await _record_events(session)
    assert (event_type, role, entity_type) == ("records.imported", "operator", "record_batch")
    uuid.UUID(entity_id)
    assert details == {"file": "records.jsonl", "written": 2, "errors": 1}
    key_ids = await session.scalars(
        select(AuditEvent.actor_key_id).where(AuditEvent.event_type == "records.imported")
    )
    assert list(key_ids) == [None]


async def test_column_in_array_helpers(
    client: AsyncClient, admin: dict[str, str], session: AsyncSession, world: dict[str, Any]
) -> None:
    """Both "column in values" helpers find the same rows; on PostgreSQL each keeps the form
    its plan was measured with (a join on unnest for the registration's lookup, `= ANY` for
    the DELETE of old identities), with one array parameter whatever the list's length."""
    for ref in ("a-1", "a-2", "a-3"):
        response = await client.post("/v1/records", json=_record(world, ref), headers=admin)
        assert response.status_code == 201, response.text
    wanted = ["a-1", "a-3", "missing"]
    joined = join_any_of(session, select(Record.record_ref), Record.record_ref, wanted)
    where = select(Record.record_ref).where(any_of(session, Record.record_ref, wanted))
    assert sorted(await session.scalars(joined)) == ["a-1", "a-3"]
    assert sorted(await session.scalars(where)) == ["a-1", "a-3"]
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        assert "JOIN unnest(" in str(joined.compile(dialect=dialect))
        assert "::VARCHAR[]" in str(joined.compile(dialect=dialect))
        assert "= ANY (" in str(where.compile(dialect=dialect))
