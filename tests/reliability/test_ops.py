"""Operations under stress: concurrent batches over the same refs, bad import lines, and a
database that is down or behind the newest migration."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from alembic.script import ScriptDirectory
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import TextClause, func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.audit.models import AuditEvent
from app.auth.models import ApiKey
from app.core.config import Settings
from app.core.db import Database
from app.core.identity import BlindIndexer
from app.core.migrate import alembic_config, upgrade
from app.core.revisions import head_revisions
from app.main import create_app
from app.records import importer
from app.records.importer import ImportReport
from app.records.models import Record
from tests.builders import TEST_SUBJECT_KEY, make_category, make_controller, make_system
from tests.conftest import bearer
from tests.databases import fresh_database


async def test_concurrent_batches_over_the_same_refs_never_fail(
    backend: str, tmp_path: Path
) -> None:
    """Four clients register batches over the same refs in different orders at once (real,
    committed transactions): row locks taken in one order, and a transaction that still meets
    a deadlock or serialization failure is retried, so no request fails."""
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        app = create_app(
            Settings(database_url=url, subject_key=TEST_SUBJECT_KEY, data_dir=tmp_path),
            database=database,
        )
        async with database.sessionmaker() as session:
            controller = await make_controller(session, kind="platform", name="Spix")
            await make_system(session, "accounts")
            for key in ("account.profile", "account.billing", "account.usage"):
                await make_category(session, key)
            admin = await bearer(session, "admin")

        refs = [f"acct-{n}" for n in range(60)]
        categories = [["account.profile"], ["account.billing"], ["account.usage"]]

        def batch(seed: int) -> list[dict[str, Any]]:
            rng = random.Random(seed)
            order = refs[:]
            rng.shuffle(order)
            return [
                {
                    "system": "accounts",
                    "record_ref": ref,
                    "controller_id": str(controller.id),
                    "identities": [
                        {"type": "email", "value": f"{ref}-{rng.randrange(3)}@example.com"}
                    ],
                    "categories": rng.choice(categories),
                    "collected_at": "2026-01-01T00:00:00Z",
                }
                for ref in order
            ]

        statuses: list[int] = []
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:

            async def post(seed: int) -> None:
                response = await client.post(
                    "/v1/records/batch", json={"records": batch(seed)}, headers=admin
                )
                statuses.append(response.status_code)
                if response.status_code == 200:
                    assert all(r["status"] != "error" for r in response.json()["results"])

            for round_ in range(5):
                await asyncio.gather(*(post(round_ * 10 + client_) for client_ in range(4)))
        await database.dispose()
        assert len(statuses) == 20
        assert [s for s in statuses if s != 200] == []


_WAITING = text(
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
    "AND datname = current_database() AND pid <> :pid"
)


async def _deadlocked(
    url: str,
    request: Coroutine[Any, Any, Response],
    first: tuple[TextClause, dict[str, Any]],
    second: tuple[TextClause, dict[str, Any]],
    *,
    commit: bool,
) -> Response:
    """Sends `request` while an outside transaction holds what `first` locks; once the request
    waits on it, the outside transaction runs `second`, which waits on what the request holds.
    PostgreSQL aborts the request's transaction (the outside one checks only after 10 s)."""
    other = create_async_engine(url)
    try:
        async with other.connect() as outside, other.connect() as watcher:
            await outside.execute(text("SET deadlock_timeout = '10s'"))
            pid = await outside.scalar(text("SELECT pg_backend_pid()"))
            await outside.execute(*first)
            task = asyncio.create_task(request)
            for _ in range(250):
                if await watcher.scalar(_WAITING, {"pid": pid}):
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the request never waited on the outside transaction")
            await outside.execute(*second)  # the deadlock: the request's transaction loses
            await (outside.commit() if commit else outside.rollback())
            return await task
    finally:
        await other.dispose()


async def _count(database: Database, event_type: str) -> int | None:
    async with database.sessionmaker() as session:
        return await session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.event_type == event_type)
        )


async def test_a_transaction_that_loses_a_deadlock_is_run_again(
    backend: str, tmp_path: Path
) -> None:
    """An outside transaction and a batch lock the same two records in opposite orders:
    PostgreSQL aborts the batch's transaction, which is run again and answers 200, once."""
    if backend != "postgresql":
        pytest.skip("SQLite takes the write lock up front (BEGIN IMMEDIATE): no deadlocks")
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        app = create_app(
            Settings(database_url=url, subject_key=TEST_SUBJECT_KEY, data_dir=tmp_path),
            database=database,
        )
        async with database.sessionmaker() as session:
            controller = await make_controller(session, kind="platform", name="Spix")
            await make_system(session, "accounts")
            await make_category(session, "account.profile")
            admin = await bearer(session, "admin")
        records = [
            {
                "system": "accounts",
                "record_ref": ref,
                "controller_id": str(controller.id),
                "categories": ["account.profile"],
                "collected_at": "2026-01-01T00:00:00Z",
            }
            for ref in ("r1", "r2")
        ]
        touch = text("UPDATE records SET updated_at = updated_at WHERE record_ref = :ref")
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
            created = await client.post(
                "/v1/records/batch", json={"records": records}, headers=admin
            )
            assert created.status_code == 200, created.text
            # The batch locks r1 then r2; the outside transaction r2 then r1.
            response = await _deadlocked(
                url,
                client.post("/v1/records/batch", json={"records": records}, headers=admin),
                (touch, {"ref": "r2"}),
                (touch, {"ref": "r1"}),
                commit=True,
            )
        registered = await _count(database, "records.registered")
        await database.dispose()
        assert response.status_code == 200, response.text
        assert [r["status"] for r in response.json()["results"]] == ["updated", "updated"]
        assert registered == 2  # the retried request wrote its audit event once


async def test_an_idempotent_create_run_again_after_a_deadlock_still_replays(
    backend: str, tmp_path: Path
) -> None:
    """The request's Idempotency-Key claim is rolled back with its lost transaction and made
    again by the re-run, whose answer is the one stored and replayed."""
    if backend != "postgresql":
        pytest.skip("SQLite takes the write lock up front (BEGIN IMMEDIATE): no deadlocks")
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        app = create_app(
            Settings(database_url=url, subject_key=TEST_SUBJECT_KEY, data_dir=tmp_path),
            database=database,
        )
        async with database.sessionmaker() as session:
            admin = await bearer(session, "admin")
            key_id = await session.scalar(select(ApiKey.id))
        headers = {**admin, "Idempotency-Key": "create-crm"}
        body = {"key": "crm", "name": "CRM"}
        now = datetime.now(UTC)
        # The request claims the key, then inserts the system; the outside transaction
        # inserts the system, then claims the same key.
        system = text(
            "INSERT INTO systems (key, name, created_at, updated_at, version) "
            "VALUES ('crm', 'Outside', :now, :now, 1)"
        )
        claim = text(
            "INSERT INTO idempotency_keys (id, key_id, key, request_hash, created_at) "
            "VALUES (:id, :key_id, 'create-crm', 'outside', :now)"
        )
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
            response = await _deadlocked(
                url,
                client.post("/v1/systems", json=body, headers=headers),
                (system, {"now": now}),
                (claim, {"id": uuid.uuid4(), "key_id": key_id, "now": now}),
                commit=False,
            )
            replay = await client.post("/v1/systems", json=body, headers=headers)
        created = await _count(database, "system.created")
        await database.dispose()
        assert response.status_code == 201, response.text
        assert response.json()["name"] == "CRM"
        assert replay.status_code == 201
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json() == response.json()
        assert created == 1


def _assert_unavailable(response: Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    problem = response.json()
    assert problem["type"] == "urn:spix-dsr:problem:unavailable"
    assert problem["status"] == 503
    # Nothing of the fault's internals: no driver, host, port, path or SQL.
    for leak in ("127.0.0.1", "Connect call", "sqlite", "asyncpg", "SELECT", "missing"):
        assert leak not in response.text


async def test_database_down_answers_503_with_retry_after(
    backend: str, tmp_path: Path, database_url: str
) -> None:
    down_url = (
        "postgresql+asyncpg://postgres@127.0.0.1:1/spix"
        if backend == "postgresql"
        else f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'spix.db'}"
    )
    # A key verified while the database was up stays cached: the route itself meets the fault.
    up = Database.from_url(database_url)
    async with up.sessionmaker() as session:
        cached = await bearer(session, "admin")
    up_app = create_app(
        Settings(database_url=database_url, subject_key=TEST_SUBJECT_KEY, data_dir=tmp_path),
        database=up,
    )
    async with AsyncClient(transport=ASGITransport(app=up_app), base_url="http://t") as client:
        assert (await client.get("/v1/systems", headers=cached)).status_code == 200
    await up.dispose()

    down = Database.from_url(down_url)
    app = create_app(
        Settings(database_url=down_url, subject_key=TEST_SUBJECT_KEY, data_dir=tmp_path),
        database=down,
    )
    # A key never seen: verifying it needs the database, so it is 503 too (not 401).
    unknown = {"Authorization": "Bearer sdsr_0123456789ab_" + "x" * 43}
    record = {
        "system": "accounts",
        "record_ref": "acct-1",
        "controller_id": "00000000-0000-0000-0000-000000000001",
        "categories": ["account.profile"],
        "collected_at": "2026-01-01T00:00:00Z",
    }
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
        for headers in (cached, unknown):
            _assert_unavailable(await client.get("/v1/systems", headers=headers))
            _assert_unavailable(await client.get("/v1/records", headers=headers))
            _assert_unavailable(
                await client.post("/v1/records/batch", json={"records": [record]}, headers=headers)
            )
            _assert_unavailable(
                await client.post(
                    "/v1/records",
                    json=record,
                    headers={**headers, "Idempotency-Key": "k-1"},
                )
            )
        _assert_unavailable(await client.get("/readyz"))
        assert (await client.get("/healthz")).status_code == 200
    await down.dispose()


async def test_a_dropped_connection_answers_503_then_recovers(backend: str, tmp_path: Path) -> None:
    if backend != "postgresql":
        pytest.skip("an embedded SQLite database has no server connection to drop")
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        app = create_app(
            Settings(database_url=url, subject_key=TEST_SUBJECT_KEY, data_dir=tmp_path),
            database=database,
        )
        async with database.sessionmaker() as session:
            admin = await bearer(session, "admin")
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
            assert (await client.get("/v1/systems", headers=admin)).status_code == 200
            killer = create_async_engine(url)
            async with killer.connect() as connection:
                await connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
            await killer.dispose()
            _assert_unavailable(await client.get("/v1/systems", headers=admin))
            assert (await client.get("/v1/systems", headers=admin)).status_code == 200
        await database.dispose()


async def test_readyz_is_not_ready_below_the_newest_migration(backend: str, tmp_path: Path) -> None:
    async with fresh_database(backend, tmp_path, migrate=False) as url:
        (head,) = head_revisions()
        script = ScriptDirectory.from_config(alembic_config(url))
        previous = script.get_revision(head).down_revision
        assert isinstance(previous, str)
        settings = Settings(database_url=url, subject_key=TEST_SUBJECT_KEY, data_dir=tmp_path)

        async def readiness() -> Response:
            database = Database.from_url(url)
            app = create_app(settings, database=database)
            async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as c:
                response = await c.get("/readyz")
            await database.dispose()
            return response

        never = await readiness()  # no alembic_version table at all
        await asyncio.to_thread(upgrade, url, previous)
        behind = await readiness()
        await asyncio.to_thread(upgrade, url)
        ready = await readiness()
    for response in (never, behind):
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"]
        assert response.json()["detail"] == "The database schema is not at the newest migration"
    assert ready.status_code == 200, ready.text


def _import_cli(url: str, tmp_path: Path, path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SPIX_DSR_DATABASE_URL": url, "SPIX_DSR_DATA_DIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "app", "import", "records", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def test_import_reports_bad_lines_and_imports_the_rest(backend: str, tmp_path: Path) -> None:
    """Invalid UTF-8, NUL bytes (raw or escaped) and broken JSON in the middle of one batch:
    each bad line is reported by number, every other line of the file is imported."""
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        async with database.sessionmaker() as session:
            controller = await make_controller(session, kind="platform", name="Spix")
            await make_system(session, "accounts")
            await make_category(session, "account.profile")

        def line(ref: str) -> bytes:
            return orjson.dumps(
                {
                    "system": "accounts",
                    "record_ref": ref,
                    "controller_id": str(controller.id),
                    "identities": [{"type": "email", "value": f"{ref}@example.com"}],
                    "categories": ["account.profile"],
                    "collected_at": "2026-01-01T00:00:00Z",
                }
            )

        lines = [line(f"acct-{n}") for n in range(10)]
        lines[2] = line("acct-2").replace(b"acct-2@", b"acct-\xff\xfe@")  # invalid UTF-8
        lines[4] = line("acct-4").replace(b"acct-4@", b"acct-\x00@")  # a raw NUL byte
        lines[6] = line("acct-6").replace(b'"acct-6"', b'"acct-\\u0000"')  # an escaped NUL
        lines[8] = b'{"system": "accounts", "record_ref": '  # cut short
        path = tmp_path / "records.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")

        result = _import_cli(url, tmp_path, path)
        assert result.returncode == 1, result.stderr
        assert "created 6, updated 0, failed 4" in result.stdout, result.stdout + result.stderr
        assert "line 3: not valid UTF-8" in result.stderr
        assert "line 5: contains a NUL byte" in result.stderr
        assert "line 7: contains a NUL character" in result.stderr
        assert "line 9: not valid JSON" in result.stderr
        assert "example.com" not in result.stderr  # no identity values in the report

        async with database.sessionmaker() as session:
            refs = set((await session.scalars(select(Record.record_ref))).all())
        await database.dispose()
        assert refs == {f"acct-{n}" for n in (0, 1, 3, 5, 7, 9)}


async def test_a_line_the_database_refuses_does_not_lose_its_batch(
    backend: str, tmp_path: Path
) -> None:
    """A value only the database rejects (PostgreSQL text holds no NUL) fails its own line;
    the batch's other lines are written one by one."""
    if backend != "postgresql":
        pytest.skip("SQLite stores a NUL in text: it refuses nothing the service accepts")
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        async with database.sessionmaker() as session:
            controller = await make_controller(session, kind="platform", name="Spix")
            await make_system(session, "accounts")
            await make_category(session, "account.profile")
        batch = [
            (
                number,
                {
                    "system": "accounts",
                    "record_ref": ref,
                    "controller_id": str(controller.id),
                    "categories": ["account.profile"],
                    "collected_at": "2026-01-01T00:00:00Z",
                },
            )
            for number, ref in enumerate(["acct-1", "acct-\x00", "acct-3"], start=1)
        ]
        indexer = BlindIndexer(TEST_SUBJECT_KEY.encode(), "k1")
        report = ImportReport()
        await importer._import_batch(database, indexer, "records.jsonl", batch, report)
        async with database.sessionmaker() as session:
            refs = set((await session.scalars(select(Record.record_ref))).all())
        await database.dispose()
        assert (report.created, report.failed) == (2, 1)
        assert report.errors == [(2, "rejected by the database")]
        assert refs == {"acct-1", "acct-3"}
