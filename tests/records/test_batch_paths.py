"""Batch registration writes its rows two ways: on PostgreSQL as column arrays and COPY
(app/records/writes.py), on SQLite as Core executemany statements. One batch that mixes new,
existing, restricted, erased, invalid and duplicate records gives the same answers and the
same rows on both, and each answer and row is the one the inventory promises."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import create_async_engine

from app.audit.models import AuditEvent
from app.core.config import Settings
from app.core.db import Database
from app.core.identity import BlindIndexer, Identity
from app.main import create_app
from app.records import writes
from app.records.models import Record, RecordIdentity
from app.records.register import Registered, batch_json
from app.records.schemas import BatchOut, BatchResult
from tests.builders import (
    TEST_SUBJECT_KEY,
    make_category,
    make_controller,
    make_purpose,
    make_rule,
    make_system,
)
from tests.conftest import bearer
from tests.databases import POSTGRES_URL, fresh_database

SHA = hashlib.sha256(b"alice@example.com").hexdigest()


@asynccontextmanager
async def served(backend: str, folder: Path) -> AsyncIterator[dict[str, Any]]:
    """A committed database with a small registry, and the app on it."""
    async with fresh_database(backend, folder) as url:
        database = Database.from_url(url)
        app = create_app(
            Settings(database_url=url, subject_key=TEST_SUBJECT_KEY, data_dir=folder),
            database=database,
        )
        async with database.sessionmaker() as session:
            # Fixed ids: an external_id's hashes are its controller's.
            spix = await make_controller(session, kind="platform", name="Spix", id=uuid.UUID(int=1))
            acme = await make_controller(session, name="Acme", id=uuid.UUID(int=2))
            await make_system(session, "accounts")
            await make_system(session, "billing")
            for key in ("account.profile", "account.usage", "billing.invoice"):
                await make_category(session, key)
            await make_purpose(session, "service.provide")
            await make_rule(session, kind="maximum", period="P1Y", category="account")
            await make_rule(session, kind="maximum", period="P6M", category="account.usage")
            await make_rule(
                session, kind="minimum", period="P10Y", category="billing.invoice", source="law"
            )
            await make_rule(
                session,
                kind="minimum",
                period="P30D",
                anchor="event:account_closed",
                category="account.profile",
                source="contract",
            )
            admin = await bearer(session, "admin")
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
            yield {
                "url": url,
                "database": database,
                "client": client,
                "admin": admin,
                "spix": str(spix.id),
                "acme": str(acme.id),
            }
        await database.dispose()


def item(world: dict[str, Any], ref: str, *identities: dict[str, str], **fields: Any) -> Any:
    return {
        "system": "accounts",
        "record_ref": ref,
        "controller_id": world["spix"],
        "identities": list(identities),
        "categories": ["account.profile"],
        "purposes": ["service.provide"],
        "collected_at": "2025-03-31T10:00:00Z",
        **fields,
    }


def email(value: str, **extra: str) -> dict[str, str]:
    return {"type": "email", "value": value, **extra}


async def run_scenario(world: dict[str, Any]) -> dict[str, Any]:
    """Seeds three records, restricts one, erases one, holds a subject, sends the mixed
    batch; returns what the batch answered and wrote, keyed by record_ref (ids differ)."""
    client, admin = world["client"], world["admin"]
    seeds = [
        item(world, "r-exist", email("old@example.com")),
        item(world, "r-restricted", email("restricted@example.com")),
        item(world, "r-erased", email("erased@example.com")),
    ]
    seeded = await client.post("/v1/records/batch", json={"records": seeds}, headers=admin)
    assert [r["status"] for r in seeded.json()["results"]] == ["created"] * 3, seeded.text
    async with world["database"].sessionmaker() as session:
        await session.execute(
            update(Record).where(Record.record_ref == "r-restricted").values(state="restricted")
        )
        await session.commit()
    erased = await client.post(
        "/v1/records/erased",
        json={"system": "accounts", "record_refs": ["r-erased"]},
        headers=admin,
    )
    assert erased.json() == {"erased": 1}
    hold = await client.post(
        "/v1/legal-holds",
        json={"reason": "claim", "identities": [email("held@example.com")]},
        headers=admin,
    )
    assert hold.status_code == 201, hold.text

    batch = [
        # 0: new, two identities, an event and activity
        item(
            world,
            "r-new",
            email(" Alice@Example.com "),
            {"type": "phone", "value": "(650) 253-0000"},
            events={"account_closed": "2026-01-10T00:00:00+02:00"},
            last_activity_at="2025-06-01T00:00:00Z",
        ),
        # 1: existing, new identities replace the old ones
        item(world, "r-exist", email("new@example.com"), collected_at="2024-01-01T00:00:00Z"),
        # 2: restricted: stays restricted, so held
        item(world, "r-restricted", email("restricted@example.com")),
        # 3: erased: the tombstone lives again
        item(world, "r-erased", email("erased@example.com")),
        # 4: invalid body
        {"system": "accounts", "record_ref": "r-bad"},
        # 5: the ref of item 0 again
        item(world, "r-new", email("alice@example.com")),
        # 6: an unknown category
        item(world, "r-unknown", categories=["account.nope"]),
        # 7: a phone that is not one
        item(world, "r-phone", {"type": "phone", "value": "12"}),
        # 8: a subject under a legal hold, at another controller, a category twice
        item(
            world,
            "r-held",
            email("held@example.com"),
            email("alice@example.com"),
            controller_id=world["acme"],
            categories=["account.usage", "account.usage"],
        ),
        # 9, 10: one text sent as a sha256, then raw (not an email): the second is an error
        item(world, "r-sha", email(SHA, format="sha256")),
        item(world, "r-sha-raw", email(SHA)),
        # 11, 12: an external id raw and the same text as a sha256: two identities
        item(world, "r-ext-raw", {"type": "external_id", "value": SHA}),
        item(world, "r-ext-sha", {"type": "external_id", "value": SHA, "format": "sha256"}),
        # 13: billing: a law minimum keeps it for ten years
        item(
            world,
            "b-invoice",
            email("alice@example.com"),
            system="billing",
            categories=["billing.invoice"],
            purposes=[],
        ),
        # 14: no identities at all
        item(world, "r-none", region="eu"),
    ]
    response = await client.post("/v1/records/batch", json={"records": batch}, headers=admin)
    assert response.status_code == 200, response.text
    results = response.json()["results"]

    async with world["database"].sessionmaker() as session:
        records = {row.record_ref: row for row in (await session.scalars(select(Record))).all()}
        by_id = {str(row.id): ref for ref, row in records.items()}
        identities: dict[str, set[tuple[str, str, str]]] = {ref: set() for ref in records}
        for row in (await session.scalars(select(RecordIdentity))).all():
            identities[by_id[str(row.record_id)]].add((row.identity_type, row.digest, row.key_id))
        (registered,) = (
            await session.scalars(
                select(AuditEvent.details)
                .where(AuditEvent.event_type == "records.registered")
                .order_by(AuditEvent.seq.desc())
                .limit(1)
            )
        ).all()

    def stored(row: Record) -> dict[str, Any]:
        return {
            "system": row.system,
            "controller_id": str(row.controller_id),
            "collected_at": row.collected_at.isoformat(),
            "last_activity_at": row.last_activity_at and row.last_activity_at.isoformat(),
            "events": row.events,
            "state": row.state,
            "erased_at": row.erased_at,
            "held": row.held,
            "keep_until": row.keep_until and row.keep_until.isoformat(),
            "keep_indefinitely": row.keep_indefinitely,
            "delete_by": row.delete_by and row.delete_by.isoformat(),
            "action": row.action,
            "written_now": row.updated_at >= row.created_at,
            "created_now": row.updated_at == row.created_at,
        }

    return {
        "results": [
            {
                "index": r["index"],
                "status": r["status"],
                "ref": r["id"] and by_id[r["id"]],
                "error": r["error"],
            }
            for r in results
        ],
        "records": {ref: stored(row) for ref, row in records.items()},
        "identities": identities,
        "audit": {
            "created": sorted(by_id[i] for i in registered["created"]),
            "updated": sorted(by_id[i] for i in registered["updated"]),
            "errors": registered["errors"],
        },
    }


def check_promises(seen: dict[str, Any]) -> None:
    """What the inventory promises for the scenario, whichever way the rows were written."""
    results = seen["results"]
    assert [(r["status"], r["ref"]) for r in results] == [
        ("created", "r-new"),
        ("updated", "r-exist"),
        ("updated", "r-restricted"),
        ("updated", "r-erased"),
        ("error", None),
        ("error", None),
        ("error", None),
        ("error", None),
        ("created", "r-held"),
        ("created", "r-sha"),
        ("error", None),
        ("created", "r-ext-raw"),
        ("created", "r-ext-sha"),
        ("created", "b-invoice"),
        ("created", "r-none"),
    ]
    assert [r["index"] for r in results] == list(range(15))
    errors = {r["index"]: r["error"] for r in results if r["error"]}
    assert errors[5]["title"] == "Duplicate record"
    assert errors[6]["errors"][0]["loc"] == ["categories", 0]
    assert errors[7]["errors"][0]["loc"] == ["identities", 0, "value"]
    assert errors[10]["title"] == "Invalid identity"
    assert seen["audit"] == {
        "created": sorted(
            ["r-new", "r-held", "r-sha", "r-ext-raw", "r-ext-sha", "b-invoice", "r-none"]
        ),
        "updated": sorted(["r-exist", "r-restricted", "r-erased"]),
        "errors": 5,
    }

    records = seen["records"]
    assert set(records) == {
        "r-new",
        "r-exist",
        "r-restricted",
        "r-erased",
        "r-held",
        "r-sha",
        "r-ext-raw",
        "r-ext-sha",
        "b-invoice",
        "r-none",
    }
    new = records["r-new"]
    assert new["events"] == {"account_closed": "2026-01-09T22:00:00.000000+00:00"}
    assert new["last_activity_at"] == "2025-06-01T00:00:00+00:00"
    # P1Y on `account` from collection; the contract minimum ends 30 days after the event.
    assert (new["delete_by"], new["keep_until"]) == (
        "2026-03-31T10:00:00+00:00",
        "2026-02-08T22:00:00+00:00",
    )
    assert new["state"] == "active" and new["created_now"]
    assert records["r-exist"]["collected_at"] == "2024-01-01T00:00:00+00:00"
    assert records["r-exist"]["written_now"] and not records["r-exist"]["created_now"]
    assert records["r-none"]["keep_indefinitely"]  # the contract minimum waits for its event
    assert (records["r-restricted"]["state"], records["r-restricted"]["held"]) == (
        "restricted",
        True,
    )
    assert (records["r-erased"]["state"], records["r-erased"]["erased_at"]) == ("active", None)
    assert (
        records["r-held"]["held"] and records["r-held"]["delete_by"] == "2025-09-30T10:00:00+00:00"
    )
    assert records["b-invoice"]["keep_until"] == "2035-03-31T10:00:00+00:00"
    assert records["b-invoice"]["action"] == "delete"

    indexer = BlindIndexer(TEST_SUBJECT_KEY.encode(), "k1")
    spix = uuid.UUID(records["r-new"]["controller_id"])

    def hashes(identity: dict[str, str], controller: uuid.UUID = spix) -> set[tuple[str, str, str]]:
        return {
            (str(d.type), d.digest, d.key_id)
            for d in indexer.all_of(Identity.model_validate(identity), controller_id=controller)
        }

    identities = seen["identities"]
    alice = hashes(email("alice@example.com"))
    assert identities["r-new"] == alice | hashes({"type": "phone", "value": "+16502530000"})
    assert len(identities["r-new"]) == 4  # current and version-2 hashes of each
    assert identities["r-exist"] == hashes(email("new@example.com"))
    assert identities["r-erased"] == hashes(email("erased@example.com"))
    assert identities["r-sha"] == hashes(email(SHA, format="sha256"))
    assert identities["r-sha"] < alice  # a sha256 identity has its current hash only
    assert identities["r-ext-raw"].isdisjoint(identities["r-ext-sha"])
    assert identities["r-none"] == set()


async def test_a_mixed_batch_answers_and_writes_what_it_promises(
    backend: str, tmp_path: Path
) -> None:
    async with served(backend, tmp_path) as world:
        check_promises(await run_scenario(world))


@pytest.mark.skipif(POSTGRES_URL is None, reason="compares PostgreSQL with SQLite")
async def test_postgresql_and_sqlite_write_the_same_rows(tmp_path: Path) -> None:
    seen = {}
    for backend in ("sqlite", "postgresql"):
        (tmp_path / backend).mkdir()
        async with served(backend, tmp_path / backend) as world:
            seen[backend] = await run_scenario(world)
    assert seen["postgresql"] == seen["sqlite"]


async def test_identity_rows_past_one_copy_chunk(
    client: AsyncClient, admin: dict[str, str], session: Any
) -> None:
    """More identity rows than one chunk holds: every row is written, each record's own."""
    spix = await make_controller(session, kind="platform", name="Spix")
    await make_system(session, "accounts")
    await make_category(session, "account.profile")
    per_record = 50
    records = [
        {
            "system": "accounts",
            "record_ref": f"wide-{n}",
            "controller_id": str(spix.id),
            "identities": [email(f"u{n}-{k}@example.com") for k in range(per_record)],
            "categories": ["account.profile"],
            "collected_at": "2026-01-01T00:00:00Z",
        }
        for n in range(writes.IDENTITY_CHUNK // (2 * per_record) + 3)
    ]
    response = await client.post("/v1/records/batch", json={"records": records}, headers=admin)
    assert response.status_code == 200, response.text
    ids = [uuid.UUID(r["id"]) for r in response.json()["results"]]
    counts = dict(
        (
            await session.execute(
                select(RecordIdentity.record_id, func.count())
                .where(RecordIdentity.record_id.in_(ids))
                .group_by(RecordIdentity.record_id)
            )
        ).all()
    )
    assert sum(counts.values()) > writes.IDENTITY_CHUNK
    assert counts == {record_id: 2 * per_record for record_id in ids}


def test_the_answer_is_the_models_document() -> None:
    """batch_json writes what BatchOut would, byte for byte."""
    from pydantic import ValidationError

    from app.records.register import ItemProblem, _validation_problem
    from app.records.schemas import RecordIn

    try:
        RecordIn.model_validate({"system": "Bad Key", "categories": ["x"]})
    except ValidationError as exc:
        invalid = _validation_problem(exc)
    outcomes = [
        Registered(0, "created", record_id=uuid.uuid4()),
        Registered(1, "updated", record_id=uuid.uuid4()),
        Registered(2, "error", problem=invalid),
        Registered(
            3,
            "error",
            problem=ItemProblem(422, "Unknown reference", "No category 'é\"\\'", ["categories", 0]),
        ),
    ]
    models = BatchOut(
        results=[
            BatchResult(
                index=o.index,
                status=o.status,  # type: ignore[arg-type]
                id=o.record_id,
                error=o.problem.error if o.problem else None,
            )
            for o in outcomes
        ]
    )
    assert batch_json(outcomes) == models.model_dump_json().encode()


_WAITING = text(
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
    "AND datname = current_database() AND pid <> :pid"
)


async def test_a_ref_registered_meanwhile_by_another_transaction_is_updated(
    backend: str, tmp_path: Path
) -> None:
    """Another transaction inserts one of the batch's new refs and commits while the batch
    waits on it: the batch skips it on insert and updates it instead, as one of its own."""
    if backend != "postgresql":
        pytest.skip("SQLite takes the write lock up front: no writer can come between")
    async with served(backend, tmp_path) as world:
        client, admin = world["client"], world["admin"]
        seeded = await client.post(
            "/v1/records/batch", json={"records": [item(world, "r-seed")]}, headers=admin
        )
        assert seeded.status_code == 200
        other = create_async_engine(world["url"])
        try:
            async with other.connect() as outside, other.connect() as watcher:
                pid = await outside.scalar(text("SELECT pg_backend_pid()"))
                raced_id = uuid.uuid4()
                await outside.execute(
                    text(
                        "INSERT INTO records (id, system, record_ref, controller_id, profile_id, "
                        "collected_at, events, state, created_at, updated_at, held, "
                        "keep_indefinitely, action) SELECT :id, system, 'r-race', controller_id, "
                        "profile_id, collected_at, events, state, created_at, updated_at, held, "
                        "keep_indefinitely, action FROM records WHERE record_ref = 'r-seed'"
                    ),
                    {"id": raced_id},
                )
                task = asyncio.create_task(
                    client.post(
                        "/v1/records/batch",
                        json={
                            "records": [
                                item(world, "r-a", email("a@example.com")),
                                item(world, "r-race", email("race@example.com")),
                                item(world, "r-z", email("z@example.com")),
                            ]
                        },
                        headers=admin,
                    )
                )
                for _ in range(250):
                    if await watcher.scalar(_WAITING, {"pid": pid}):
                        break
                    await asyncio.sleep(0.02)
                else:
                    raise AssertionError("the batch never waited on the other transaction")
                await outside.commit()
                response = await task
        finally:
            await other.dispose()
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [r["status"] for r in results] == ["created", "updated", "created"]
        assert results[1]["id"] == str(raced_id)
        async with world["database"].sessionmaker() as session:
            digests = (
                await session.scalars(
                    select(RecordIdentity.digest).where(RecordIdentity.record_id == raced_id)
                )
            ).all()
        assert len(digests) == 2  # the batch's identity, current and version 2
