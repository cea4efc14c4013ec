"""Hot reads (app/core/hot_read.py) run their SQL straight on PostgreSQL's driver: they must
give the rows a Core execute gives, and a connection that broke under one must answer 503 and
leave the pool, as any other read does."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx import ASGITransport
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.core.config import Settings
from app.core.db import Database, create_engine
from app.main import create_app
from app.retention.answer import _DECISION_BY_KIND
from tests.builders import (
    TEST_SUBJECT_KEY,
    make_category,
    make_controller,
    make_purpose,
    make_record,
    make_system,
)
from tests.conftest import bearer
from tests.databases import fresh_database, terminate_other_connections


async def _world(database: Database) -> tuple[str, dict[str, str]]:
    async with database.sessionmaker() as session:
        controller = await make_controller(session, kind="platform", name="Spix")
        await make_system(session, "accounts")
        await make_category(session, "account.profile")
        record_id = await make_record(
            session,
            system="accounts",
            controller_id=controller.id,
            categories=["account.profile"],
            events={"account_closed": "2026-02-01T00:00:00Z"},
        )
        admin = await bearer(session, "admin")
    return str(record_id), admin


async def test_a_hot_read_gives_the_rows_core_gives(backend: str, tmp_path: Path) -> None:
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        record_id, _ = await _world(database)
        hot = _DECISION_BY_KIND["everything"]
        async with database.engine.connect() as connection:
            params = {"record_id": uuid.UUID(record_id)}
            (core,) = (await connection.execute(hot.statement, params)).all()
            (fast,) = await hot.rows(connection, params)
            assert await hot.rows(connection, {"record_id": uuid.uuid4()}) == []
        await database.dispose()
    assert fast._fields == tuple(core._fields)
    assert tuple(fast) == tuple(core)
    assert isinstance(fast.events, dict) and "account_closed" in fast.events  # JSON decoded


@pytest.mark.parametrize("statement", ["hot read", "hot write", "hot write at commit"])
async def test_a_connection_broken_under_a_hot_statement_answers_503_then_recovers(
    backend: str, tmp_path: Path, statement: str
) -> None:
    """A retention check (a hot read) or a filing (a hot write, its transaction's first
    statement; with a code, its only one, run by the commit) on a pooled connection the
    server has dropped."""
    if backend != "postgresql":
        pytest.skip("an embedded SQLite database has no server connection to terminate")
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url, pool_size=1)
        app = create_app(
            Settings(database_url=url, subject_key=TEST_SUBJECT_KEY, data_dir=tmp_path),
            database=database,
        )
        record_id, admin = await _world(database)
        filing = {
            "type": "access",
            "regime": "gdpr",
            "identities": ALICE,
            "verified": statement == "hot write",
        }
        async with httpx.AsyncClient(
            transport=ASGITransport(app=app), base_url="http://t", headers=admin
        ) as client:

            async def call() -> httpx.Response:
                if statement == "hot read":
                    return await client.get(f"/v1/records/{record_id}/retention")
                return await client.post("/v1/requests", json=filing)

            assert (await call()).is_success  # the pool holds a connection
            assert await terminate_other_connections(url)
            broken = await call()
            after = [(await call()).status_code for _ in range(3)]
        await database.dispose()
    assert broken.status_code == 503, broken.text
    assert broken.headers["content-type"].startswith("application/problem+json")
    assert after == ([200] * 3 if statement == "hot read" else [201] * 3)


ALICE = [{"type": "email", "value": "alice@example.com"}]


async def _held_world(database: Database) -> dict[str, Any]:
    """Two records of one subject in two systems, and a key to write the rest through the
    API: an opt-out, an erasure, then a hold on one system (which suspends its task, and
    makes its record's check read which holds in a session)."""
    async with database.sessionmaker() as session:
        controller = await make_controller(session, kind="platform", name="Spix")
        for system in ("accounts", "support"):
            await make_system(session, system)
        await make_category(session, "account.profile")
        await make_purpose(session, "marketing.email")
        records = [
            await make_record(
                session,
                system=system,
                controller_id=controller.id,
                categories=["account.profile"],
                identities=ALICE,
            )
            for system in ("accounts", "support")
        ]
        admin = await bearer(session, "admin")
    return {"records": records, "admin": admin, "controller": str(controller.id)}


def _app(database: Database, url: str, folder: Path) -> Any:
    settings = Settings(database_url=url, subject_key=TEST_SUBJECT_KEY, data_dir=folder)
    return create_app(settings, database=database)


async def test_the_hot_routes_answer_alike_with_and_without_a_session(
    backend: str, tmp_path: Path
) -> None:
    """Pooled reads (the server's) and read sessions (the tests' path) give the same answers
    for every hot route, a held record and a suspended task included, and a pooled read
    leaves no connection checked out."""
    async with fresh_database(backend, tmp_path) as url:
        pooled = Database.from_url(url)
        engine = create_engine(url)
        sessions = Database(
            engine,
            read_sessionmaker=async_sessionmaker(
                engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
            ),
        )
        assert pooled.pooled_reads == (backend == "postgresql")
        assert not sessions.pooled_reads
        world = await _held_world(pooled)
        admin = world["admin"]
        seen: dict[str, list[tuple[int, Any]]] = {}
        for name, database in (("pooled", pooled), ("sessions", sessions)):
            app = _app(database, url, tmp_path)
            async with httpx.AsyncClient(
                transport=ASGITransport(app=app), base_url="http://t", headers=admin
            ) as client:
                if name == "pooled":  # the writes, once, before either reads
                    opt_out = {
                        "identity": ALICE[0],
                        "channel": "email",
                        "purpose": "marketing.email",
                        "source": "unsubscribe_link",
                        "controller_id": world["controller"],
                    }
                    added = await client.post("/v1/suppressions", json=opt_out)
                    assert added.is_success, added.text
                    filed = await client.post(
                        "/v1/requests",
                        json={
                            "type": "erasure",
                            "regime": "gdpr",
                            "identities": ALICE,
                            "verified": True,
                        },
                    )
                    assert filed.status_code == 201, filed.text
                    world["request"] = filed.json()["id"]
                    # After the filing: the hold suspends the erasure's task on its system.
                    hold = await client.post(
                        "/v1/legal-holds", json={"reason": "litigation", "system": "support"}
                    )
                    assert hold.status_code == 201, hold.text
                answers = []
                for record_id in world["records"]:
                    answers.append(await client.get(f"/v1/records/{record_id}/retention"))
                answers.append(await client.get(f"/v1/records/{uuid.uuid4()}/retention"))
                for who in ("alice@example.com", "bob@example.com"):
                    check = {
                        "identities": [{"type": "email", "value": who}],
                        "channel": "email",
                        "purpose": "marketing.email",
                    }
                    answers.append(await client.post("/v1/suppressions/check", json=check))
                unknown = {"identities": ALICE, "channel": "email", "purpose": "no.such"}
                answers.append(await client.post("/v1/suppressions/check", json=unknown))
                answers.append(await client.post("/v1/subjects/lookup", json={"identities": ALICE}))
                paged = await client.post("/v1/subjects/lookup?limit=1", json={"identities": ALICE})
                answers.append(paged)
                answers.append(await client.get(f"/v1/requests/{world['request']}"))
                answers.append(await client.get(f"/v1/requests/{uuid.uuid4()}"))
                assert database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
            seen[name] = [
                (a.status_code, {k: v for k, v in a.json().items() if k != "request_id"})
                for a in answers
            ]
        await pooled.dispose()
        await sessions.dispose()
    statuses = [status for status, _ in seen["pooled"]]
    assert statuses == [200, 200, 404, 200, 200, 422, 200, 200, 200, 404], seen["pooled"]
    held = seen["pooled"][1][1]
    assert held["status"] == "held" and len(held["holds"]) == 1, held
    assert seen["pooled"][3][1]["suppressed"] and not seen["pooled"][4][1]["suppressed"]
    assert seen["pooled"][7][1]["next_cursor"]
    tasks = [t for s in seen["pooled"][8][1]["scopes"] for t in s["tasks"]]
    assert any(t["held_by"] for t in tasks), tasks
    assert seen["pooled"] == seen["sessions"]
